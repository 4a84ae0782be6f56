"""The session a forecast is for: the calendar's next one, exactly as exchange_calendars
says, and the next weekday for a day the calendar does not hold."""

from __future__ import annotations

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from pipeline.forecasting.sessions import NextSession


def test_the_next_session_is_the_calendars_on_every_session_of_years() -> None:
    calendar = xcals.get_calendar("XNYS", start="1990-01-01")
    next_session = NextSession("XNYS")
    days = calendar.sessions_in_range("2012-01-03", "2018-12-28")
    for day in days:
        assert next_session(np.datetime64(day.date())) == f"{calendar.next_session(day):%Y-%m-%d}"
    assert next_session(np.datetime64("2013-12-24")) == "2013-12-26"  # Christmas skipped
    assert next_session(np.datetime64("2012-10-26")) == "2012-10-31"  # hurricane Sandy


def test_a_day_the_calendar_does_not_hold_gets_the_next_weekday() -> None:
    next_session = NextSession("XNYS")
    assert next_session(np.datetime64("2013-03-02")) == "2013-03-04"  # a Saturday's bar
    assert next_session(np.datetime64("2013-12-25")) == "2013-12-26"  # a holiday's bar
    beyond = pd.Timestamp(xcals.get_calendar("XNYS").last_session) + pd.Timedelta(days=400)
    friday = beyond + pd.offsets.Week(weekday=4)
    assert next_session(np.datetime64(friday.date())) == f"{friday + pd.Timedelta(days=3):%Y-%m-%d}"
