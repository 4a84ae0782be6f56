import datetime as dt
from dataclasses import dataclass

import pendulum

from pipeline.orchestration.dates import run_day


@dataclass
class DagRun:
    run_after: dt.datetime


def test_a_scheduled_run_after_the_new_york_close_is_that_day() -> None:
    close = pendulum.datetime(2013, 3, 1, 16, 30, tz="America/New_York")  # 21:30 UTC
    assert run_day({"logical_date": close}) == dt.date(2013, 3, 1)


def test_the_day_is_the_utc_day() -> None:
    late_in_new_york = pendulum.datetime(2013, 3, 1, 21, 30, tz="America/New_York")
    assert run_day({"logical_date": late_in_new_york}) == dt.date(2013, 3, 2)
    early_in_tokyo = dt.datetime(2013, 3, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert run_day({"logical_date": early_in_tokyo}) == dt.date(2013, 3, 1)


def test_dags_test_midnight_utc_is_that_day() -> None:
    assert run_day({"logical_date": pendulum.datetime(2013, 3, 1, tz="UTC")}) == dt.date(2013, 3, 1)


def test_a_manual_run_without_logical_date_uses_run_after() -> None:
    queued = DagRun(run_after=dt.datetime(2013, 3, 4, 23, 59, tzinfo=dt.UTC))
    ignored = DagRun(run_after=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert run_day({"logical_date": None, "dag_run": queued}) == dt.date(2013, 3, 4)
    assert run_day({"dag_run": queued}) == dt.date(2013, 3, 4)
    stamp = dt.datetime(2013, 3, 1, 12, tzinfo=dt.UTC)
    assert run_day({"logical_date": stamp, "dag_run": ignored}) == dt.date(2013, 3, 1)
