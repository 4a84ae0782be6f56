"""The session after a day, on a version's exchange calendar: what a forecast is for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class NextSession:
    """`next_session(day)` -> "YYYY-MM-DD". The calendar is loaded when first asked (it
    costs about a second, which a process that never answers should not pay), its sessions
    kept as day numbers: a lookup is then one binary search (about 40 us through
    exchange_calendars, where every request of a new day would pay it)."""

    def __init__(self, calendar: str):
        self._name = calendar
        self._sessions: np.ndarray | None = None  # datetime64[D], ascending

    def __call__(self, day: np.datetime64) -> str:
        sessions = self._load() if self._sessions is None else self._sessions
        on = np.asarray(day, dtype="datetime64[D]")
        at = int(np.searchsorted(sessions, on))
        if at + 1 < len(sessions) and sessions[at] == on:
            return str(sessions[at + 1])
        # a day that is not one of the calendar's sessions (or its last): the next weekday
        return f"{pd.Timestamp(on.item()) + pd.offsets.BDay(1):%Y-%m-%d}"

    def _load(self) -> np.ndarray:
        import exchange_calendars as xcals

        calendar: Any = xcals.get_calendar(self._name, start="1990-01-01")
        self._sessions = np.asarray(calendar.sessions.values, dtype="datetime64[D]")
        return self._sessions
