"""Daily price pipeline: wiring only. The step order comes from pipeline/steps.py.

Per ticker (dynamic task mapping): ingest -> validate -> monitor (realised error of
earlier forecasts) -> features. Then the model half, once for the universe model
(`model.scope: universe`: every ticker's features pooled) or per ticker: tune (x
tune.workers sharing one Optuna study) -> best -> train -> evaluate -> register ->
promote. Then per ticker again: forecast (the next session, by the production model).
Each task runs one step's adapter on a small carry (paths, run ids, versions) and
passes it on with the step's keys added.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

from pipeline.steps import DATA_STEPS, FAN_OUT, MODEL_STEPS

# The first retry waits Airflow's [core] default_task_retry_delay (300 s unless the
# deployment says otherwise: docker-compose.yaml, `stack.task_retry_delay_s`), then doubles.
RETRIES = {"retries": 2, "retry_exponential_backoff": True, "max_retry_delay": timedelta(hours=1)}
Carry = dict[str, Any]  # pipeline.carry.Carry, as XCom hands it over


def _advance(name: str, c: Carry) -> Carry:
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline import steps
    from pipeline.config import load_config
    from pipeline.validate import ValidationFailed

    ti = get_current_context()["ti"]
    final = ti.try_number > ti.max_tries  # no retry left: a failure closes the MLflow run
    try:
        return dict(steps.advance(load_config(), name, c, final))  # type: ignore[arg-type]
    except ValidationFailed as exc:  # bad data: retrying cannot help
        raise AirflowFailException(str(exc)) from exc


def step_task(name: str) -> Any:
    @task(task_id=name)
    def run_step(c: Carry) -> Carry:
        return _advance(name, c)

    return run_step


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
    def tickers() -> list[Carry]:
        """One starting carry per configured ticker, for this run's day."""
        from pipeline import steps
        from pipeline.config import load_config
        from pipeline.dates import run_day

        ctx = get_current_context()
        day = run_day(ctx)
        return [dict(steps.start(t, day, ctx["run_id"])) for t in load_config().tickers]

    @task
    def tune_workers() -> list[int]:
        from pipeline.config import load_config

        return list(range(load_config().tune.workers))

    @task(task_id=FAN_OUT)
    def fanned_out(c: Carry, worker: int) -> Carry:
        return _advance(FAN_OUT, {**c, "worker": worker})

    @task
    def per_ticker(done: list[Carry]) -> list[Carry]:
        """The fanned-out step ran as model x worker; go on with one carry per model."""
        return list({c["ticker"]: c for c in done}.values())

    @task
    def models(data: list[Carry]) -> list[Carry]:
        """What the model half runs on: the pooled universe, or each ticker."""
        from pipeline import universe
        from pipeline.config import load_config

        return [dict(c) for c in universe.model_carries(load_config(), data)]  # type: ignore[arg-type]

    @task
    def to_tickers(data: list[Carry], done: list[Carry]) -> list[Carry]:
        """A carry per ticker again, with its model's promotion, for the forecast."""
        from pipeline import universe
        from pipeline.config import load_config

        cfg = load_config()
        return [dict(c) for c in universe.forecast_carries(cfg, data, done)]  # type: ignore[arg-type]

    data: Any = tickers()
    for name in DATA_STEPS:
        data = step_task(name).expand(c=data)
    model: Any = models(data)
    for name in MODEL_STEPS:
        if name == FAN_OUT:
            tuned = fanned_out.expand(c=model, worker=tune_workers())  # model x worker
            model = per_ticker(tuned)  # type: ignore[arg-type]  # XComArg at parse time
        else:
            model = step_task(name).expand(c=model)
    step_task("forecast").expand(c=to_tickers(data, model))


price_pipeline()
