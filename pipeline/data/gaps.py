"""Sessions missing inside a ticker's span, against the exchange calendar.

A vendor sometimes skips days (the S&P 500 data misses 16 sessions of DHR and of O): the
bar after such a hole moves over several sessions, and taken as one session's return it
would teach the model a false volatility. These are reported per ticker, training
features (pipeline/data/features.py) start afresh after a gap instead of bridging it, and
the daily forecast holds back a ticker whose input bars span one
(pipeline/monitoring/forecast.py). The served model does not check its requests yet.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd


@functools.lru_cache(maxsize=4)
def sessions(calendar: str) -> pd.DatetimeIndex:
    """Every session of `calendar` (tz-naive days), 1990 to the calendar's end."""
    import exchange_calendars as xcals

    days = xcals.get_calendar(calendar, start="1990-01-01").sessions
    return pd.DatetimeIndex(days.tz_localize(None) if days.tz is not None else days)


def missing_sessions(dates: pd.Series, calendar: str) -> pd.DatetimeIndex:
    """Sessions between the first and the last of `dates` that have no bar."""
    if dates.empty:
        return pd.DatetimeIndex([])
    every = sessions(calendar)
    span = every[(every >= dates.min()) & (every <= dates.max())]
    return span.difference(pd.DatetimeIndex(dates))


def breaks(dates: np.ndarray, calendar: str) -> np.ndarray:
    """Per row, whether the bar before it is not the previous session (a gap, or a bar on a
    day that is no session): the move into that row spans more than one session."""
    days = pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[ns]"))
    every = sessions(calendar)
    pos = every.get_indexer(days)
    out = np.zeros(len(days), dtype=bool)
    if len(days) > 1:
        out[1:] = (np.diff(pos) != 1) | (pos[1:] < 0) | (pos[:-1] < 0)
    return out


def describe(missing: pd.DatetimeIndex, shown: int = 5) -> dict[str, Any]:
    """{count, days (the first few)} for reports."""
    return {"count": len(missing), "days": [f"{d:%Y-%m-%d}" for d in missing[:shown]]}
