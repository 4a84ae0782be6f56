"""Adaptive conformal intervals: widths that follow the forecaster's own recent misses.

Intervals learnt on years that include a crisis come out too wide in calm years and too
narrow when a calm model meets a storm. Adaptive conformal inference (Gibbs & Candès,
NeurIPS 2021) corrects that online, without retraining: after every session the interval
widens if the realised close fell outside it and narrows a little if inside, so that in
the long run the miss rate is the nominal one. Here it is run in the width's log (online
quantile tracking, the "P" of Angelopoulos, Candès & Tibshirani's conformal PID, 2023):

    log f <- log f + step * (miss - (1 - level)),  miss = |r - loc| / scale > q * f

where q is the distribution's own multiplier for `level` and f the factor that multiplies
the interval's half-width, starting at 1.

Stateless: the factor for a day is the recursion run over the `lookback` sessions before
it, each forecast by the same model, so a server computes it from the bars a request
already carries (forecasting the previous sessions in it) and the backtest and the
evaluation compute exactly what the server does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.forecasting.intervals import LEVELS, Forecast

STEP = 0.05  # log-width change per unit of (miss - alpha); the default of model.conformal_step
LOOKBACK = 250  # sessions the recursion runs over (about a year)


def standardized_errors(r: np.ndarray, f: Forecast) -> np.ndarray:
    """|realised - loc| / scale per session (NaN where the outcome is not known yet)."""
    return np.asarray(np.abs(np.asarray(r, dtype="float64") - f.loc) / f.scale)


def adaptive_factors(
    errors: np.ndarray, q: float, level: float, step: float, lookback: int
) -> np.ndarray:
    """Per session t: the factor the recursion reaches, from 1, over the known errors of
    sessions t - lookback .. t - 1. The sessions up to `lookback` all start from the first,
    so theirs is one running pass; the later ones are vectorised, one pass per lookback
    step (an evaluation's test days, fewer than the lookback, cost one pass)."""
    n = len(errors)
    if step <= 0 or lookback <= 0:
        return np.ones(n)
    alpha, head = 1 - level, min(n, lookback + 1)
    out, log_f = np.empty(n), 0.0
    for i, e in enumerate(errors[:head].tolist()):
        out[i] = log_f  # the recursion over sessions 0 .. i - 1
        if math.isfinite(e):
            log_f += step * ((e > q * math.exp(log_f)) - alpha)
    if head == n:
        return np.exp(out)
    t = np.arange(head, n)  # every one of these has `lookback` sessions before it
    tail = np.zeros(len(t))
    for k in range(lookback, 0, -1):  # session t - k, oldest first
        past = errors[t - k]
        miss = past > q * np.exp(tail)
        tail += np.where(np.isfinite(past), step * (miss - alpha), 0.0)
    out[head:] = tail
    return np.exp(out)


def final_factor(errors: list[float], q: float, level: float, step: float) -> float:
    """The factor for the session after `errors` (oldest first): adaptive_factors' last
    value, in plain floats (one request's few hundred sessions)."""
    log_f, alpha = 0.0, 1 - level
    for e in errors:
        if e == e:  # not NaN
            log_f += step * ((e > q * math.exp(log_f)) - alpha)
    return math.exp(log_f)


def past_sessions(step: float, lookback: int, spare_rows: int) -> int:
    """How many sessions before the newest a request forecasts again for its factor: the
    version's lookback, or as many as the request's rows beyond one window's allow (none
    for a version without the adaptive widths, step 0)."""
    return min(lookback, spare_rows) if step > 0 else 0


def calibrate(f: Forecast, r: np.ndarray, step: float, lookback: int) -> Forecast:
    """The forecast with adaptive width factors at every level, from realised returns r
    (NaN where not known yet) of the same sessions."""
    errors = standardized_errors(r, f)
    factors = {
        level: adaptive_factors(errors, f.multiplier(level), level, step, lookback)
        for level in LEVELS
    }
    return dataclasses.replace(f, factors=factors)


def widen(
    days: pd.DataFrame, level: float, step: float, lookback: int
) -> tuple[np.ndarray, np.ndarray]:
    """One series' central intervals (columns lower, upper, last_close, actual; in time
    order) with the adaptive factors applied; works for any forecaster whose intervals are
    symmetric in log price, without its distribution."""
    last = days["last_close"].to_numpy(dtype="float64")
    low = np.log(days["lower"].to_numpy(dtype="float64") / last)
    high = np.log(days["upper"].to_numpy(dtype="float64") / last)
    mid, half = (low + high) / 2, (high - low) / 2
    errors = np.abs(np.log(days["actual"].to_numpy(dtype="float64") / last) - mid) / half
    factor = adaptive_factors(errors, 1.0, level, step, lookback)  # in units of half
    return last * np.exp(mid - half * factor), last * np.exp(mid + half * factor)


def spec(step: float, lookback: int) -> dict[str, Any]:
    """What a logged version carries to calibrate its intervals when serving."""
    return {"method": "aci_log_width", "step": step, "lookback": lookback}
