"""Forecast distributions for the next log return, and how to score them.

A forecast is Gaussian in tomorrow's log return r = log(close_t+1 / close_t) with a
location `loc` and a `scale`; its central intervals in price are
close_t * exp(loc +- z * scale). Scores (lower is better, except coverage):

- coverage: the share of realised closes inside the interval (nominal: its level);
- interval (Winkler) score at level 1 - alpha: width + 2/alpha x the miss distance
  (Gneiting & Raftery 2007), in price units, so a narrow interval that misses pays;
- CRPS of the Gaussian on the log return (closed form), the whole distribution at once;
- PIT: the forecast CDF at the realised return; uniform when the forecasts are calibrated.

Two baselines, on the same days: the naive interval (random walk with drift: loc = the
training-mean return, scale = the trailing 20-session standard deviation of log returns)
and EWMA (RiskMetrics, lambda = 0.94).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVELS = (0.8, 0.95)
NAIVE_WINDOW = 20
EWMA_LAMBDA = 0.94


@functools.cache
def z_value(level: float) -> float:
    """The two-sided standard normal quantile of a central interval: 0.8 -> 1.2816."""
    return NormalDist().inv_cdf(0.5 + level / 2)


@dataclass(frozen=True)
class Forecast:
    """Per day: the close it is made at, and the Gaussian of the next log return."""

    last_close: np.ndarray
    loc: np.ndarray
    scale: np.ndarray

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central `level` interval of the next close, in price."""
        half = z_value(level) * self.scale
        return self.last_close * np.exp(self.loc - half), self.last_close * np.exp(self.loc + half)


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((actual >= lower) & (actual <= upper)))


def interval_score(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float
) -> np.ndarray:
    """Per-day Winkler score of the central `level` interval."""
    alpha = 1 - level
    below = np.clip(lower - actual, 0, None)
    above = np.clip(actual - upper, 0, None)
    return np.asarray((upper - lower) + (2 / alpha) * (below + above))


def crps_gaussian(r: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per-day CRPS of N(loc, scale^2) at the realised log return r (closed form)."""
    from scipy import stats

    z = (r - loc) / scale
    return np.asarray(
        scale * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))
    )


def pit(r: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The forecast CDF at the realised return: uniform on [0, 1] when calibrated."""
    from scipy import stats

    return np.asarray(stats.norm.cdf((r - loc) / scale))


def gaussian_nll(r: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> float:
    """Mean negative log-likelihood of r under N(loc, scale^2)."""
    z = (r - loc) / scale
    return float(np.mean(0.5 * z**2 + np.log(scale) + 0.5 * math.log(2 * math.pi)))


def trailing_std(returns: np.ndarray, window: int = NAIVE_WINDOW) -> np.ndarray:
    """At each day t, the sample std of the `window` log returns up to and including t
    (known at the close of t); NaN until `window` returns exist."""
    out = np.full(len(returns), np.nan)
    for t in range(window - 1, len(returns)):
        out[t] = np.std(returns[t - window + 1 : t + 1], ddof=1)
    return out


def ewma_std(returns: np.ndarray, lam: float = EWMA_LAMBDA, seed: int = NAIVE_WINDOW) -> np.ndarray:
    """RiskMetrics: var_t = lam * var_t-1 + (1 - lam) * r_t^2, started from the variance of
    the first `seed` returns; at each day t the forecast std for day t+1. NaN before."""
    out = np.full(len(returns), np.nan)
    if len(returns) < seed:
        return out
    var = float(np.var(returns[:seed], ddof=1))
    out[seed - 1] = math.sqrt(var)
    for t in range(seed, len(returns)):
        var = lam * var + (1 - lam) * returns[t] ** 2
        out[t] = math.sqrt(var)
    return out


def scores(actual: np.ndarray, forecast: Forecast, prefix: str) -> dict[str, float]:
    """Coverage and mean interval score at every level, CRPS and NLL of the log return."""
    r = np.log(actual / forecast.last_close)
    out: dict[str, float] = {}
    for level in LEVELS:
        lower, upper = forecast.interval(level)
        pct = round(level * 100)
        out[f"{prefix}coverage_{pct}"] = coverage(actual, lower, upper)
        out[f"{prefix}interval_score_{pct}"] = float(
            np.mean(interval_score(actual, lower, upper, level))
        )
    out[f"{prefix}crps"] = float(np.mean(crps_gaussian(r, forecast.loc, forecast.scale)))
    out[f"{prefix}nll"] = gaussian_nll(r, forecast.loc, forecast.scale)
    return out
