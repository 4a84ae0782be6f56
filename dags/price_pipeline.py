"""Daily price pipeline: wiring only. Each task imports its step and calls run().

Per ticker (dynamic task mapping): ingest -> validate -> monitor (realised error
of earlier forecasts) -> features -> tune (x tune.workers sharing one Optuna
study) -> best -> train -> evaluate -> register -> promote -> forecast (the next
session, by the production model). Each task passes on a small dict (paths, run
ids, versions) that grows by the step's own result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

RETRIES = {"retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True}
Carry = dict[str, Any]


def _cfg() -> Any:
    from pipeline.config import load_config

    return load_config()


def _day() -> Any:
    from pipeline.dates import run_day

    return run_day(get_current_context())


@dag(
    dag_id="price_pipeline",
    schedule="30 17 * * 1-5",  # weekdays, 17:30 New York: after the US close
    start_date=pendulum.datetime(2000, 1, 1, tz="America/New_York"),  # replays of old data
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    tags=["forecasting"],
    doc_md=__doc__,
)
def price_pipeline() -> None:
    @task
    def tickers() -> list[str]:
        return list(_cfg().tickers)

    @task
    def ingest(ticker: str) -> Carry:
        from pipeline import ingest

        return ingest.run(_cfg(), ticker, _day())

    @task
    def validate(c: Carry) -> Carry:
        from airflow.sdk.exceptions import AirflowFailException

        from pipeline import validate

        try:
            return {**c, **validate.run(_cfg(), c["ticker"], _day(), c["raw_path"])}
        except validate.ValidationFailed as exc:  # bad data: retrying cannot help
            raise AirflowFailException(str(exc)) from exc

    @task
    def monitor(c: Carry) -> Carry:
        from pipeline import monitor

        return {**c, **monitor.run(_cfg(), c["ticker"], _day())}

    @task
    def features(c: Carry) -> Carry:
        from pipeline import features

        return {**c, **features.run(_cfg(), c["ticker"], _day())}

    @task
    def tune_workers() -> list[int]:
        return list(range(_cfg().tune.workers))

    @task
    def tune(c: Carry, worker: int) -> Carry:
        from pipeline import tracking, tune

        cfg, run_id = _cfg(), get_current_context()["run_id"]
        parent = tracking.parent_run(cfg, c["ticker"], c["day"], run_id)
        ran = tune.search(cfg, c["ticker"], c["day"], c["features_path"], parent)
        return {**c, "parent_run_id": parent, "worker": worker, "trials_run": ran}

    @task
    def per_ticker(done: list[Carry]) -> list[Carry]:
        """Tuning ran as ticker x worker; go on with one carry per ticker."""
        return list({c["ticker"]: c for c in done}.values())

    @task
    def best(c: Carry) -> Carry:
        from pipeline import tune

        return {**c, **tune.best(_cfg(), c["ticker"], c["day"], c["parent_run_id"])}

    @task
    def train(c: Carry) -> Carry:
        from pipeline import train

        return {
            **c,
            **train.run(
                _cfg(),
                c["ticker"],
                c["day"],
                c["features_path"],
                c["parent_run_id"],
                c["best_params"],
                c["best_epoch"],
                c["validation"],
            ),
        }

    @task
    def evaluate(c: Carry) -> Carry:
        from pipeline import evaluate

        ev = evaluate.run(
            _cfg(), c["ticker"], c["day"], c["features_path"], c["model_uri"], c["parent_run_id"]
        )
        return {**c, "evaluation": ev}

    @task
    def register(c: Carry) -> Carry:
        from pipeline import flow, registry

        ev = flow.evidence(c["evaluation"], c, c["validation"])
        return {
            **c,
            "version": registry.register(
                _cfg(), c["ticker"], c["model_uri"], c["parent_run_id"], ev
            ),
        }

    @task
    def promote(c: Carry) -> Carry:
        from pipeline import flow

        summary = flow.promote_and_finish(
            _cfg(), c["ticker"], c["version"], c["evaluation"], c["parent_run_id"]
        )
        print(summary)
        return {**c, "promotion": summary}

    @task
    def forecast(c: Carry) -> Carry:
        from pipeline import monitor

        return {**c, **monitor.forecast(_cfg(), c["ticker"], _day())}

    carry = validate.expand(c=ingest.expand(ticker=tickers()))
    carry = features.expand(c=monitor.expand(c=carry))
    tuned = tune.expand(c=carry, worker=tune_workers())  # ticker x worker
    carry = best.expand(c=per_ticker(tuned))  # type: ignore[arg-type]  # XComArg at parse time
    carry = register.expand(c=evaluate.expand(c=train.expand(c=carry)))
    forecast.expand(c=promote.expand(c=carry))


price_pipeline()
