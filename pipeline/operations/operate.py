"""`make run` / `python -m pipeline daily DATE`: one trading day, as the scheduler runs it.

The daily DAG for the universe, through real Airflow (`airflow dags test`); before it, on
a state where some ticker has no production model, the retrain DAG (nothing could
forecast yet); after it, the retrain the day's report asks for, as its asset event would
schedule it. While they run, each task's start and end is printed (from the journal the
tasks write); at the end, the day's table. Exit 0 when every ticker's day went through,
1 when any failed (its reason is in the table), 2 when a DAG run itself failed.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from pipeline import schedule
from pipeline.config import Config
from pipeline.lifecycle import registry
from pipeline.operations import daily, day_table
from pipeline.orchestration.airflow_run import Runner, dag_test, ensure_airflow_db
from pipeline.orchestration.dates import is_session


def unserved(cfg: Config) -> list[str]:
    """Configured tickers no production model can serve."""
    return [t for t in cfg.tickers if registry.production_version(cfg, t) is None]


@dataclass
class Day:
    """What one trading day did: its report, the retrains it ran and why, the exit code."""

    rc: int
    report: dict[str, Any] | None = None
    retrains: list[dict[str, Any]] = field(default_factory=list)

    def retrain_note(self) -> str:
        return "; ".join(
            f"{r['when']}: {schedule.why(r['reasons'])} ({r['mode']})" for r in self.retrains
        )


def retrain(
    cfg: Config,
    day: dt.date,
    out: Day,
    when: str,
    conf: dict[str, Any],
    progress: bool,
    runner: Runner = dag_test,
) -> bool:
    """The retrain DAG for `day` as its schedule would run it; recorded in `out`."""
    rc = runner(cfg, schedule.RETRAIN, day, {"day": day.isoformat(), **conf}, progress)
    if rc >= 128:  # stopped by a signal
        out.rc = rc
    mode = conf.get("mode") or ("refit" if conf.get("reasons") else "tune")
    out.retrains.append({"day": day.isoformat(), "when": when, "mode": mode, "ok": rc == 0,
                         "reasons": conf.get("reasons") or {}})  # fmt: skip
    return rc == 0


def one_day(cfg: Config, day: dt.date, progress: bool = True, runner: Runner = dag_test) -> Day:
    """The day end to end; see the module docstring."""
    out = Day(rc=0)
    if missing := unserved(cfg):
        conf = {"reasons": {t: ["no_production"] for t in missing}, "mode": "tune"}
        if not retrain(cfg, day, out, "before the day", conf, progress, runner):
            out.rc = out.rc or 2
            return out
    daily.report_path(cfg, day).unlink(missing_ok=True)  # only this run's report counts
    rc = runner(cfg, schedule.DAILY, day, None, progress)
    if rc >= 128:  # stopped by a signal: nothing more runs
        out.rc = rc
        return out
    path = daily.report_path(cfg, day)
    if not path.exists():
        out.rc = 2
        return out
    out.report = json.loads(path.read_text())
    asked = out.report["retrain"]
    if (
        asked
        and not out.retrains
        and not retrain(cfg, day, out, "after the day", {"reasons": asked}, progress)
    ):
        out.rc = 2
        return out
    out.rc = 1 if daily.failed_tickers(out.report) else (0 if rc == 0 else 2)
    return out


FIRST_DAY = dt.date(2000, 1, 1)  # the DAGs' start_date: Airflow runs nothing before it


def day_problem(cfg: Config, day: dt.date, today: dt.date | None = None) -> str | None:
    """Why `day` cannot run at all (it would fail the same way on every retry), or None."""
    today = today or dt.date.today()
    if day > today:
        return f"{day} is in the future (today is {today}): there are no bars for it yet"
    if day < FIRST_DAY:
        return f"{day} is before the DAGs' start date {FIRST_DAY}: Airflow would run nothing"
    return None


def say_closed(cfg: Config) -> None:
    """Close what dead runs left open (their DAG runs, MLflow runs), saying so."""
    from pipeline.operations.orphans import close_orphans

    for line in close_orphans(cfg):
        print(f"closed, left open by a run that died: {line}", flush=True)


def run_day(cfg: Config, day: dt.date) -> int:
    """`make run`: one day with progress, then the day's table."""
    if problem := day_problem(cfg, day):
        print(f"refused: {problem}", file=sys.stderr)
        return 2
    if not is_session(day, cfg.validation.calendar):
        print(f"{day} is not a {cfg.validation.calendar} session: nothing to do")
        return 0
    ensure_airflow_db()
    say_closed(cfg)
    out = one_day(cfg, day)
    if out.report is not None:
        print()
        print(day_table.console(cfg, out.report, out.retrain_note()))
        print(f"report: {daily.report_path(cfg, day)}; forecasts: {cfg.layout.forecasts_db()}")
        if (page := daily.report_path(cfg, day).with_suffix(".html")).exists():
            print(f"report page: {page} (in the Airflow UI too: `make ui`, Forecast reports)")
        print(
            "next: `make serve` (REST on the production model), `make ui` (Airflow, MLflow, Optuna)"
        )
    return out.rc
