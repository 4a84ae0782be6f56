"""The run date of an Airflow task, whatever kind of run it is."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def run_day(context: Mapping[str, Any]) -> dt.date:
    """The calendar day (UTC) a run is for.

    Scheduled runs fire after the New York close, which is the same UTC day;
    `airflow dags test DAG 2013-03-01` gives midnight UTC of that day. Airflow 3
    manual runs may carry no logical date: then the day the run was queued for.
    """
    stamp = context.get("logical_date") or context["dag_run"].run_after
    return dt.datetime.fromtimestamp(stamp.timestamp(), tz=dt.UTC).date()


def is_session(day: dt.date, calendar: str) -> bool:
    """Whether `day` is a trading session of the exchange calendar (not a weekend or an
    exchange holiday)."""
    from pipeline.data.suite import expected_session

    return expected_session(day, calendar).date() == day
