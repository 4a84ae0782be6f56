"""The session after a day, on a version's exchange calendar: what a forecast is for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CACHED_DAYS = 10_000  # the same few days are asked again and again; a server runs for weeks


class NextSession:
    """`next_session(day)` -> "YYYY-MM-DD", the calendar loaded when first asked (it costs
    about a second, which a process that never answers should not pay), answers cached."""

    def __init__(self, calendar: str):
        self._name, self._calendar = calendar, None
        self._cache: dict[np.datetime64, str] = {}

    def __call__(self, day: np.datetime64) -> str:
        if day not in self._cache:
            if len(self._cache) > CACHED_DAYS:
                self._cache.clear()
            self._cache[day] = self._lookup(pd.Timestamp(day))
        return self._cache[day]

    def _lookup(self, day: pd.Timestamp) -> str:
        import exchange_calendars as xcals

        if self._calendar is None:
            self._calendar = xcals.get_calendar(self._name, start="1990-01-01")
        calendar: Any = self._calendar
        try:
            return f"{calendar.next_session(day):%Y-%m-%d}"
        except (ValueError, KeyError):  # a date the calendar does not know: next weekday
            return f"{day + pd.offsets.BDay(1):%Y-%m-%d}"
