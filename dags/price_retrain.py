"""Retraining: features -> tune (x tune.workers, one study) -> train -> evaluate ->
register -> promote, for the universe model (or each ticker's, `model.scope: ticker`).

Scheduled by a weekly cron (Saturday 06:00 New York: it tunes) *or* the daily DAG's
retrain request (an asset event: it refits with the last tuned parameters), whichever
comes first (AssetOrTimeSchedule). Every event queued for the run is read; the reasons
are kept on the MLflow run (retrain_* tags). Per ticker first, ingest and validate for
the day (idempotent: the daily DAG has usually done it), so a first run on a fresh state
needs nothing else; a ticker whose pull fails validation is trained on its stored bars.
The data half runs per chunk of tickers (`chunk_size`); a ticker that cannot contribute
(held out, too short, no valid stored bars) is left out at once, with its reason in the
retrain's report, and never holds back the universe's model.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    dag,
    get_current_context,
    task,
)

from pipeline.orchestration import stop
from pipeline.orchestration.failures import classified
from pipeline.orchestration.steps import DATA_STEPS, FAN_OUT, MODEL_STEPS
from pipeline.schedule import RETRAIN, RETRAIN_ASSET

RETRIES = {"retries": 2, "retry_exponential_backoff": True, "max_retry_delay": timedelta(hours=1)}
# and no task starts once `make run` / `make replay` was asked to stop (orchestration/stop.py)
DEFAULTS = {**RETRIES, "pre_execute": stop.check}
Carry = dict[str, Any]


def step_task(name: str) -> Any:
    @task(task_id=name)
    def run_step(c: Carry) -> Carry:
        from pipeline.orchestration.dag_tasks import advance

        return advance(RETRAIN, name, c, keep_stored=True)

    return run_step


def chunk_task(name: str) -> Any:
    # the carry goes on through XCom; printed for 394 tickers it would fill the log
    @task(task_id=name, show_return_value_in_logs=False)
    def run_step(c: Carry) -> Carry:
        from pipeline.orchestration.dag_tasks import advance_chunk

        return advance_chunk(RETRAIN, name, c, keep_stored=True)

    return run_step


@dag(
    dag_id=RETRAIN,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * 6", timezone="America/New_York"),
        assets=Asset(RETRAIN_ASSET),
    ),
    start_date=pendulum.datetime(2000, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["forecasting", "training"],
    doc_md=__doc__,
)
def price_retrain() -> None:
    @task
    @classified(RETRAIN)
    def plan() -> dict[str, Any]:
        """Why this run, for which day, tune or refit (pipeline/operations/retrain.py)."""
        from pipeline.config import load_config
        from pipeline.operations import retrain
        from pipeline.orchestration import journal
        from pipeline.orchestration.dates import run_day

        ctx = get_current_context()
        cfg = load_config()
        events = ctx.get("triggering_asset_events")
        p = retrain.plan(cfg, events, ctx["dag_run"].conf, run_day(ctx))
        journal.start_over(cfg, RETRAIN, dt.date.fromisoformat(p["day"]))
        retrain.record_plan(cfg, p)
        print(f"retrain for {p['day']}: {retrain.summary(p)}")
        return p

    @task
    @classified(RETRAIN)
    def tickers(p: dict[str, Any]) -> list[Carry]:
        from pipeline.config import load_config
        from pipeline.orchestration import chunks

        cfg, day = load_config(), dt.date.fromisoformat(p["day"])
        run_id = get_current_context()["run_id"]
        return chunks.start(cfg.tickers, day, run_id, cfg.chunk_size, retrain=p)

    @task
    @classified(RETRAIN)
    def tune_workers() -> list[int]:
        from pipeline.config import load_config

        return list(range(load_config().tune.workers))

    @task(task_id=FAN_OUT)
    def fanned_out(c: Carry, worker: int) -> Carry:
        from pipeline.orchestration.dag_tasks import advance

        return advance(RETRAIN, FAN_OUT, {**c, "worker": worker})

    @task
    @classified(RETRAIN)
    def per_model(done: list[Carry]) -> list[Carry]:
        """The fanned-out step ran as model x worker; go on with one carry per model."""
        return list({c["ticker"]: c for c in done}.values())

    @task
    @classified(RETRAIN)
    def models(data: list[Carry]) -> list[Carry]:
        """What the model half runs on: the pooled universe, or each ticker; the tickers
        left out, with their reasons, go to the retrain's report."""
        from pipeline.config import load_config
        from pipeline.data import universe
        from pipeline.operations import retrain
        from pipeline.orchestration import chunks

        cfg, going = load_config(), chunks.members(data)
        left_out = retrain.record_left_out(cfg, data[0]["day"], going)
        if not going:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"no ticker can contribute: {left_out}")
        return [dict(c) for c in universe.model_carries(cfg, going)]  # type: ignore[arg-type]

    planned: Any = plan()
    data: Any = tickers(planned)
    for name in DATA_STEPS:
        data = chunk_task(name).expand(c=data)
    model: Any = models(data)
    for name in MODEL_STEPS:
        if name == FAN_OUT:
            tuned = fanned_out.expand(c=model, worker=tune_workers())  # model x worker
            model = per_model(tuned)  # type: ignore[arg-type]  # XComArg at parse time
        else:
            model = step_task(name).expand(c=model)


price_retrain()
