"""Daily operations: every ticker's forecast for the next session, each on its own.

Weekdays after the New York close. Per chunk of tickers (`chunk_size`), as a mapped task
group: ingest -> validate -> monitor (realised errors, coverage, input drift) -> forecast
with the production model; inside a chunk each ticker ends on its own (one ticker's bad
day does not stop the others). Then, whatever happened (`all_done`):
the day's report (per ticker: status, forecast, interval, model version, alerts), and
**one** asset event when a retrain is needed, with the tickers and reasons in its extra,
which schedules `price_retrain`. The run fails, after the report, if any ticker did.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task, task_group

from pipeline.orchestration import stop
from pipeline.orchestration.failures import classified
from pipeline.orchestration.steps import DAILY_STEPS
from pipeline.schedule import DAILY, RETRAIN_ASSET

# The first retry waits Airflow's [core] default_task_retry_delay (300 s unless the
# deployment says otherwise: docker-compose.yaml, `stack.task_retry_delay_s`), then doubles.
RETRIES = {"retries": 2, "retry_exponential_backoff": True, "max_retry_delay": timedelta(hours=1)}
# and no task starts once `make run` / `make replay` was asked to stop (orchestration/stop.py)
DEFAULTS = {**RETRIES, "pre_execute": stop.check}
RETRAIN_REQUEST = Asset(RETRAIN_ASSET)
Carry = dict[str, Any]


def step_task(name: str) -> Any:
    # the carry goes on through XCom; printed for 394 tickers it would fill the log
    @task(task_id=name, show_return_value_in_logs=False)
    def run_step(c: Carry) -> Carry:
        from pipeline.orchestration.dag_tasks import advance_chunk

        return advance_chunk(DAILY, name, c)

    return run_step


@dag(
    dag_id=DAILY,
    schedule="30 17 * * 1-5",  # weekdays, 17:30 New York: after the US close
    start_date=pendulum.datetime(2000, 1, 1, tz="America/New_York"),  # replays of old data
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["forecasting"],
    doc_md=__doc__,
)
def price_daily() -> None:
    @task
    @classified(DAILY)
    def tickers() -> list[Carry]:
        """One starting carry per chunk of the configured tickers, for this run's day."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.config import load_config
        from pipeline.orchestration import chunks, journal
        from pipeline.orchestration.dates import is_session, run_day

        ctx = get_current_context()
        day, cfg = run_day(ctx), load_config()
        if not is_session(day, cfg.validation.calendar):  # an exchange holiday
            raise AirflowSkipException(f"{day} is not a {cfg.validation.calendar} session")
        if ctx["ti"].try_number == 1:
            journal.start_over(cfg, DAILY, day)
        return chunks.start(cfg.tickers, day, ctx["run_id"], cfg.chunk_size)

    @task_group(group_id="chunk")
    def chunk_day(c: Carry) -> Any:
        out: Any = c
        for name in DAILY_STEPS:
            out = step_task(name)(out)
        return out

    @task(trigger_rule="all_done")
    @classified(DAILY)
    def report() -> dict[str, Any]:
        """The day's report, however each ticker's chain ended."""
        from pipeline.config import load_config
        from pipeline.operations import daily, day_table
        from pipeline.orchestration.dates import run_day
        from pipeline.reporting import page

        cfg, day = load_config(), run_day(get_current_context())
        rep = daily.report(cfg, day)
        print(day_table.table(rep))
        print(f"report page: {page.write(cfg, day)}")
        daily.housekeeping(cfg, day)
        return rep

    @task(outlets=[RETRAIN_REQUEST])
    @classified(DAILY)
    def request_retrain(rep: dict[str, Any]) -> dict[str, Any]:
        """One event for the whole day (not one per mapped task), or skipped."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.schedule import why

        if not rep["retrain"]:
            raise AirflowSkipException("no retrain needed")
        extra = {"day": rep["day"], "reasons": rep["retrain"]}
        get_current_context()["outlet_events"][RETRAIN_REQUEST].extra = extra
        print(f"retrain requested: {why(rep['retrain'])}")
        return extra

    @task(trigger_rule="all_done")
    @classified(DAILY)
    def all_tickers_ok(rep: dict[str, Any]) -> None:
        """Fail the run (after the report and the event) if any ticker failed."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipeline.operations.daily import failed_tickers

        if bad := failed_tickers(rep):
            raise AirflowFailException(
                "; ".join(f"{t}: {rep['tickers'][t]['status']}" for t in bad)
            )

    chains: Any = chunk_day.expand(c=tickers())
    rep: Any = report()
    chains >> rep
    request_retrain(rep) >> all_tickers_ok(rep)


price_daily()
