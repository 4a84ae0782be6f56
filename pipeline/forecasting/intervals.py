"""Forecast distributions for the next log return, and how to score them.

A forecast is a location-scale distribution of tomorrow's log return
r = log(close_t+1 / close_t): Gaussian (the baselines) or Student-t with `df` degrees of
freedom (the model: daily returns have fat tails, and a Gaussian fitted to them by
likelihood makes its central intervals too wide). Its central intervals in price are
close_t * exp(loc +- q * scale). Scores (lower is better, except coverage):

- coverage: the share of realised closes inside the interval (nominal: its level);
- interval (Winkler) score at level 1 - alpha: width + 2/alpha x the miss distance
  (Gneiting & Raftery 2007), in price units, so a narrow interval that misses pays;
- CRPS on the log return (closed forms), the whole distribution at once;
- PIT: the forecast CDF at the realised return; uniform when the forecasts are calibrated.

Baselines, on the same days: the naive interval (random walk with drift: loc = the
training-mean return, scale = the trailing 20-session standard deviation of log returns),
EWMA (RiskMetrics, lambda = 0.94), and the strongest classical ones, HAR on range-based
variance and GJR-GARCH-t (pipeline/evaluation/baselines.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVELS = (0.8, 0.95)
# The model's distribution: Student-t with this many degrees of freedom. Daily returns have
# fat tails, and a Gaussian fitted by likelihood stretches its scale to cover them, making
# its central intervals too wide.
STUDENT_T_DF = 5.0
MIN_MULTIPLIER = 1e-3  # of the base scale: keeps the likelihood finite
# A t's standard deviation is its scale * sqrt(df / (df - 2)): the base scale (a trailing
# std) times this is the t scale whose std is that std, so an untrained net has exactly
# the trailing volatility.
T_SCALE_PER_STD = math.sqrt((STUDENT_T_DF - 2) / STUDENT_T_DF)
NAIVE_WINDOW = 20
EWMA_LAMBDA = 0.94


@functools.cache
def z_value(level: float, df: float | None = None) -> float:
    """The two-sided standard quantile of a central interval: the normal's (0.8 -> 1.2816),
    or Student-t's with `df` degrees of freedom."""
    if df is None:
        return NormalDist().inv_cdf(0.5 + level / 2)
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Forecast:
    """Per day: the close it is made at, and the distribution of the next log return:
    loc + scale * Z, with Z Gaussian, Student-t when `df` is set, or the empirical
    distribution of the sorted sample `empirical` (HAR's standardized returns). Its
    intervals are widened or narrowed per day by `factors` where those are set."""

    last_close: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    df: float | None = None
    empirical: np.ndarray | None = None
    # per level, per day: what multiplies the interval's half-width (forecasting/conformal.py)
    factors: dict[float, np.ndarray] | None = None

    def multiplier(self, level: float) -> float:
        """Half-width of the central `level` interval in units of scale."""
        if self.empirical is not None:
            return float(np.quantile(np.abs(self.empirical), level))
        return z_value(level, self.df)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central `level` interval of the next close, in price."""
        half = self.multiplier(level) * self.scale
        if self.factors is not None:
            half = half * self.factors[level]
        return self.last_close * np.exp(self.loc - half), self.last_close * np.exp(self.loc + half)

    def variance(self) -> np.ndarray:
        """The forecast variance of the next log return (what QLIKE judges)."""
        if self.empirical is not None:
            return np.asarray(self.scale**2 * float(np.mean(self.empirical**2)))
        if self.df is not None:
            return np.asarray(self.scale**2 * self.df / (self.df - 2))
        return np.asarray(self.scale**2)


# softplus(b) + MIN_MULTIPLIER = 1 at b = log(exp(1 - MIN_MULTIPLIER) - 1): the head's bias
# that makes an untrained network's multiplier 1 (model.py; the HAR forecaster's head)
UNIT_MULTIPLIER_BIAS = math.log(math.expm1(1 - MIN_MULTIPLIER))


def distribution(raw: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's raw output [location, raw multiplier] and the base scale ->
    (location, Student-t scale); the head is built in pipeline/forecasting/model.py."""
    raw = np.asarray(raw, dtype="float64").reshape(-1, 2)
    multiplier = np.logaddexp(0.0, raw[:, 1]) + MIN_MULTIPLIER  # softplus, overflow-safe
    return raw[:, 0], np.asarray(base, dtype="float64") * T_SCALE_PER_STD * multiplier


def combine_with_har(
    loc: np.ndarray, scale: np.ndarray, har_std: np.ndarray, drift: float
) -> tuple[np.ndarray, np.ndarray]:
    """An equal-weight combination of the network's Student-t and HAR's (HAR's forecast of
    the return's std as a Student-t scale of the same df, around the training-mean return
    `drift`): locations averaged, scales combined geometrically. Every central interval's
    half-width is then the geometric mean of the two forecasters'. On 394 stocks the
    combination beat HAR where neither network nor HAR alone did (docs/benchmarks.md)."""
    har = np.asarray(har_std, dtype="float64") * T_SCALE_PER_STD
    return (np.asarray(loc) + drift) / 2, np.sqrt(np.asarray(scale, dtype="float64") * har)


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


def crps_student_t(r: np.ndarray, loc: np.ndarray, scale: np.ndarray, df: float) -> np.ndarray:
    """Per-day CRPS of a location-scale Student-t at r (closed form, df > 1; Jordan et al.,
    scoringRules' crps_t)."""
    from scipy import special, stats

    z = (r - loc) / scale
    tail = 2 * stats.t.pdf(z, df) * (df + z**2) / (df - 1)
    const = (
        2
        * math.sqrt(df)
        * special.beta(0.5, df - 0.5)
        / ((df - 1) * special.beta(0.5, df / 2) ** 2)
    )
    return np.asarray(scale * (z * (2 * stats.t.cdf(z, df) - 1) + tail - const))


def pit(r: np.ndarray, loc: np.ndarray, scale: np.ndarray, df: float | None = None) -> np.ndarray:
    """The forecast CDF at the realised return: uniform on [0, 1] when calibrated."""
    from scipy import stats

    z = (r - loc) / scale
    return np.asarray(stats.norm.cdf(z) if df is None else stats.t.cdf(z, df))


def nll(r: np.ndarray, loc: np.ndarray, scale: np.ndarray, df: float | None = None) -> float:
    """Mean negative log-likelihood of r under the forecast distribution."""
    from scipy import stats

    z = (r - loc) / scale
    logpdf = stats.norm.logpdf(z) if df is None else stats.t.logpdf(z, df)
    return float(np.mean(np.log(scale) - logpdf))


def crps_empirical(r: np.ndarray, loc: np.ndarray, scale: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per-day CRPS of loc + scale * Z, Z uniform on the sorted sample z:
    E|X - r| - E|X - X'| / 2, both in closed form over the sorted sample (no loops)."""
    m = len(z)
    u = (r - loc) / scale
    below = np.searchsorted(z, u, side="right")  # how many z <= u
    prefix = np.concatenate([[0.0], np.cumsum(z)])
    mean_abs = (u * below - prefix[below] + (prefix[m] - prefix[below]) - u * (m - below)) / m
    spread = float(np.sum((2 * np.arange(1, m + 1) - m - 1) * z)) * 2 / m**2  # E|Z - Z'|
    return np.asarray(scale * (mean_abs - spread / 2))


def crps(r: np.ndarray, f: Forecast) -> np.ndarray:
    if f.empirical is not None:
        return crps_empirical(r, f.loc, f.scale, f.empirical)
    if f.df is None:
        return crps_gaussian(r, f.loc, f.scale)
    return crps_student_t(r, f.loc, f.scale, f.df)


def trailing_std(returns: np.ndarray, window: int = NAIVE_WINDOW) -> np.ndarray:
    """At each day t, the sample std of the `window` log returns up to and including t
    (known at the close of t); NaN until `window` returns exist."""
    out = np.full(len(returns), np.nan)
    if len(returns) >= window:  # every window at once: one np.std, not one per day
        windows = np.lib.stride_tricks.sliding_window_view(np.asarray(returns), window)
        out[window - 1 :] = windows.std(axis=1, ddof=1)
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
