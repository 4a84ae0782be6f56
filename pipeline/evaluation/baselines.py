"""The strongest classical next-day volatility baselines.

A learned interval should beat what econometrics already does well, not only the naive
trailing std and EWMA of pipeline/forecasting/intervals.py:

- HAR on range-based variance (Corsi 2009): the log of tomorrow's variance regressed on
  the logs of the 1-, 5- and 22-day mean variance. The daily variance is the squared
  overnight gap plus Garman-Klass, which uses the whole bar (open, high, low, close) and is
  far less noisy than a squared close-to-close return. Its intervals take the empirical
  quantiles of the standardized returns, so no distribution is assumed.
- GJR-GARCH(1,1) with Student-t errors (arch): volatility clustering, the leverage effect
  (falls raise volatility more than rises) and fat tails, fitted by likelihood once on the
  training returns and then run forward with those parameters.

How they and the model are scored and tested: pipeline/evaluation/statistics.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.evaluation.statistics import VARIANCE_FLOOR
from pipeline.forecasting.intervals import Forecast

HAR_WINDOWS = (1, 5, 22)  # day, week, month (sessions)
GARCH_SCALE = 100.0  # arch fits percent returns: its optimiser is tuned for that scale


def range_variance(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> np.ndarray:
    """Per day, the variance of the close-to-close log return estimated from the bar: the
    squared overnight gap log(O_t / C_t-1) plus Garman-Klass for the open-to-close move,
    0.5 log(H/L)^2 - (2 log 2 - 1) log(C/O)^2. The first day has no previous close: GK only.
    Floored at VARIANCE_FLOOR so its log is finite."""
    o, h, lo, c = (np.log(np.asarray(x, dtype="float64")) for x in (open_, high, low, close))
    gk = 0.5 * (h - lo) ** 2 - (2 * math.log(2) - 1) * (c - o) ** 2
    gap = np.zeros_like(o)
    gap[1:] = (o[1:] - c[:-1]) ** 2
    return np.maximum(gap + gk, VARIANCE_FLOOR)


def har_regressors(v: np.ndarray) -> np.ndarray:
    """(n, 4): 1 and the logs of the mean variance over the last 1, 5 and 22 days up to and
    including t (known at its close); NaN rows until 22 days exist."""
    v = np.asarray(v, dtype="float64")
    out = np.full((len(v), 1 + len(HAR_WINDOWS)), np.nan)
    out[:, 0] = 1.0
    csum = np.concatenate([[0.0], np.cumsum(v)])
    for j, w in enumerate(HAR_WINDOWS, start=1):
        if len(v) >= w:
            out[w - 1 :, j] = np.log((csum[w:] - csum[:-w]) / w)
    out[: max(HAR_WINDOWS) - 1] = np.nan
    return out


@dataclass(frozen=True)
class HarFit:
    """A HAR fit: the log-variance regression, its retransformation and its standardized
    returns (the interval multipliers, with no distribution assumed)."""

    coef: np.ndarray  # [const, b_day, b_week, b_month]
    smearing: float  # mean(exp(residual)): E[v] = exp(fit) * this (Duan 1983)
    residuals: np.ndarray  # sorted z = r_t+1 / sigma_t on the fitting rows

    def quantile(self, level: float) -> float:
        """The multiplier of a central `level` interval: the empirical `level` quantile of |z|
        on the fitting rows (symmetric; the fitted returns' own tails, not a Gaussian's)."""
        return float(np.quantile(np.abs(self.residuals), level))


def _rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows)
    return np.flatnonzero(rows) if rows.dtype == bool else rows.astype(int)


def har_fit(v: np.ndarray, r_next: np.ndarray, rows: np.ndarray) -> HarFit:
    """OLS of log v_t+1 on har_regressors(v)[t] over the days `rows` (a bool mask or
    indices); days whose regressors, target or next return are unknown are dropped.
    r_next[t] is the log return from close t to close t+1: its standardized values give
    the interval multipliers."""
    v = np.asarray(v, dtype="float64")
    r_next = np.asarray(r_next, dtype="float64")
    x = har_regressors(v)
    t = _rows(rows)
    t = t[t + 1 < len(v)]
    y = np.log(v[t + 1])
    keep = np.isfinite(x[t]).all(axis=1) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if len(t) <= x.shape[1]:
        raise ValueError(f"HAR needs more than {x.shape[1]} usable rows, got {len(t)}")
    coef = np.linalg.lstsq(x[t], y, rcond=None)[0]
    fitted = x[t] @ coef
    smearing = float(np.mean(np.exp(y - fitted)))
    z = r_next[t] / np.sqrt(np.exp(fitted) * smearing)
    return HarFit(coef=coef, smearing=smearing, residuals=np.sort(z[np.isfinite(z)]))


def har_sigma(fit: HarFit, v: np.ndarray) -> np.ndarray:
    """At each day t, the forecast std of the log return from close t to close t+1: v
    estimates the close-to-close variance, so this is sqrt of the smeared HAR forecast.
    NaN while the 22-day window warms up."""
    return np.asarray(np.sqrt(np.exp(har_regressors(v) @ fit.coef) * fit.smearing))


def gjr_garch_sigma(returns: np.ndarray, fit_rows: int) -> tuple[np.ndarray, float, float]:
    """GJR-GARCH(1,1) with a constant mean and Student-t errors, fitted on the first
    `fit_rows` log returns only; then the one-step forecasts with those parameters for
    every later day (the recursion runs on the realised returns, the parameters stay put).

    Returns (sigma, mu, nu): sigma[t] is the forecast std of return t+1 made at the close
    of t, for t >= fit_rows - 1 (NaN before); mu the mean return; nu the t's degrees of
    freedom (arch's t has unit variance: see standardized_t_quantile)."""
    from arch import arch_model

    returns = np.asarray(returns, dtype="float64")
    if not 0 < fit_rows <= len(returns):
        raise ValueError(f"fit_rows must be in 1..{len(returns)}, got {fit_rows}")
    model = arch_model(GARCH_SCALE * returns, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t")
    res = model.fit(last_obs=fit_rows, disp="off")
    # reindex=False: row k holds the forecast made at origin fit_rows - 1 + k for the next day
    variance = res.forecast(horizon=1, start=fit_rows - 1, reindex=False).variance
    sigma = np.full(len(returns), np.nan)
    sigma[fit_rows - 1 :] = np.sqrt(variance.to_numpy()[:, 0]) / GARCH_SCALE
    return sigma, float(res.params["mu"]) / GARCH_SCALE, float(res.params["nu"])


def standardized_t_quantile(level: float, nu: float) -> float:
    """The central-interval multiplier of arch's unit-variance Student-t with `nu` degrees
    of freedom: scipy's t quantile * sqrt((nu - 2) / nu)."""
    from arch.univariate import StudentsT

    return float(StudentsT().ppf([0.5 + level / 2], [nu])[0])


def har_forecast(
    bars: pd.DataFrame, fit_rows: np.ndarray, bar_of: np.ndarray, last: np.ndarray, loc: np.ndarray
) -> Forecast:
    """HAR fitted on the bars `fit_rows`, forecasting from the bars `bar_of`."""
    o, h, lo, c = (bars[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close"))
    v = range_variance(o, h, lo, c)
    r_next = np.append(np.diff(np.log(c)), np.nan)
    fit = har_fit(v, r_next, fit_rows)
    return Forecast(last, loc, har_sigma(fit, v)[bar_of], empirical=fit.residuals)


def garch_forecast(
    returns: np.ndarray, fit_rows: int, at: np.ndarray, last: np.ndarray
) -> Forecast:
    """GJR-GARCH(1,1)-t fitted on the first `fit_rows` returns, one step ahead from `at`.

    One fit, then the recursion with those parameters over every later day: not a refit
    per day. A fit costs 20-30 ms, so a daily refit of hundreds of tickers over their
    test days would take hours; the evaluation fits once per ticker on the days before
    its test period, the walk-forward backtest once per refit point."""
    import warnings

    with warnings.catch_warnings():  # arch warns on slow convergence; the fit still stands
        warnings.simplefilter("ignore")
        sigma, mu, nu = gjr_garch_sigma(returns, fit_rows)
    t_scale = sigma[at] * math.sqrt((nu - 2) / nu)  # arch's t has unit variance
    return Forecast(last, np.full(len(at), mu), t_scale, df=nu)
