"""The evaluation's statistical tests and scoring rules, for every forecaster alike.

Coverage is tested by Kupiec (is the miss rate the nominal one?) and Christoffersen (do
misses cluster?); variance forecasts are compared by QLIKE, which is robust to the noise
of the squared return used as the realised variance (Patton 2011); losses are compared by
Diebold-Mariano with the Harvey-Leybourne-Newbold correction; many tickers' tests at once
by the false-discovery rate (Benjamini-Hochberg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.forecasting.intervals import LEVELS, Forecast, crps, interval_score, nll

VARIANCE_FLOOR = 1e-12  # keeps log(variance) finite on flat bars and zero returns


def kupiec(hits: np.ndarray, level: float) -> tuple[float, float]:
    """Kupiec's unconditional coverage test: LR of the observed miss rate against the
    nominal 1 - level. `hits` is True where the realised value fell inside the interval.
    (statistic, p-value from chi2(1)); xlogy makes 0 or all misses finite."""
    from scipy import special, stats

    hits = np.asarray(hits, dtype=bool)
    n, miss = len(hits), int(np.sum(~hits))
    if n == 0:
        return 0.0, 1.0
    p, rate = 1 - level, miss / n
    null = special.xlogy(n - miss, 1 - p) + special.xlogy(miss, p)
    alt = special.xlogy(n - miss, 1 - rate) + special.xlogy(miss, rate)
    stat = max(float(-2 * (null - alt)), 0.0)
    return stat, float(stats.chi2.sf(stat, 1))


def christoffersen(hits: np.ndarray) -> tuple[float, float]:
    """Christoffersen's independence test: LR of a first-order Markov chain on the misses
    against independent misses; a small p-value means misses cluster (the interval does
    not adapt to volatility fast enough). (statistic, p-value from chi2(1))."""
    from scipy import special, stats

    miss = ~np.asarray(hits, dtype=bool)
    prev, cur = miss[:-1], miss[1:]
    n00, n01 = int(np.sum(~prev & ~cur)), int(np.sum(~prev & cur))
    n10, n11 = int(np.sum(prev & ~cur)), int(np.sum(prev & cur))
    p01 = n01 / max(n00 + n01, 1)  # miss after a hit; max(): xlogy(0, nan) is nan
    p11 = n11 / max(n10 + n11, 1)  # miss after a miss
    p = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    null = special.xlogy(n00 + n10, 1 - p) + special.xlogy(n01 + n11, p)
    alt = (
        special.xlogy(n00, 1 - p01)
        + special.xlogy(n01, p01)
        + special.xlogy(n10, 1 - p11)
        + special.xlogy(n11, p11)
    )
    stat = max(float(-2 * (null - alt)), 0.0)
    return stat, float(stats.chi2.sf(stat, 1))


def qlike(r: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Per-day QLIKE loss of a variance forecast against the squared realised return:
    r2/var - log(r2/var) - 1, zero when they agree (Patton 2011: robust to the noise in r2).
    A zero return would make log(r2) infinite, so r2 is floored at VARIANCE_FLOOR; the floor
    is the same for every model, so differences of losses (DM tests) barely move."""
    r2 = np.maximum(np.asarray(r, dtype="float64") ** 2, VARIANCE_FLOOR)
    ratio = r2 / np.asarray(variance, dtype="float64")
    return np.asarray(ratio - np.log(ratio) - 1)


def diebold_mariano(
    e_model: np.ndarray, e_base: np.ndarray, horizon: int = 1
) -> tuple[float, float]:
    """DM test on squared errors with the Harvey-Leybourne-Newbold correction.

    Negative statistic: the model's errors are smaller. Two-sided p-value from t(n-1).
    """
    return diebold_mariano_losses(e_model**2, e_base**2, horizon)


def diebold_mariano_losses(
    loss_model: np.ndarray, loss_base: np.ndarray, horizon: int = 1
) -> tuple[float, float]:
    """DM test on any per-day losses (squared errors, interval scores), HLN-corrected."""
    from scipy import stats

    d = loss_model - loss_base
    n = len(d)
    mean = d.mean()
    gamma = [np.mean((d[k:] - mean) * (d[: n - k] - mean)) for k in range(horizon)]
    var = (gamma[0] + 2 * sum(gamma[1:])) / n
    if n < 3 or not var > 0:  # also NaN: a loss that is not a number on some day
        return 0.0, 1.0
    hln = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = hln * mean / math.sqrt(var)
    return float(stat), float(2 * stats.t.sf(abs(stat), df=n - 1))


def scores(actual: np.ndarray, forecast: Forecast, prefix: str) -> dict[str, float]:
    """Coverage (with Kupiec's and Christoffersen's p-values) and the mean interval score at
    every level, CRPS, QLIKE, and NLL where the distribution has a density."""
    r = np.log(actual / forecast.last_close)
    out: dict[str, float] = {}
    for level in LEVELS:
        lower, upper = forecast.interval(level)
        pct = round(level * 100)
        inside = (actual >= lower) & (actual <= upper)
        out[f"{prefix}coverage_{pct}"] = float(np.mean(inside))
        out[f"{prefix}kupiec_pvalue_{pct}"] = kupiec(inside, level)[1]
        out[f"{prefix}christoffersen_pvalue_{pct}"] = christoffersen(inside)[1]
        out[f"{prefix}interval_score_{pct}"] = float(
            np.mean(interval_score(actual, lower, upper, level))
        )
    out[f"{prefix}crps"] = float(np.mean(crps(r, forecast)))
    out[f"{prefix}qlike"] = float(np.mean(qlike(r - forecast.loc, forecast.variance())))
    if forecast.empirical is None:
        out[f"{prefix}nll"] = nll(r, forecast.loc, forecast.scale, forecast.df)
    return out


def fdr_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (scipy's false_discovery_control). Valid for
    tests that are independent or positively dependent, as stocks' are on the same market
    days (Benjamini and Yekutieli 2001): an assumption, not checked here."""
    from scipy.stats import false_discovery_control

    if not pvalues:
        return []
    return [float(q) for q in false_discovery_control(list(pvalues), method="bh")]
