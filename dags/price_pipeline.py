"""Daily price pipeline: wiring only. Each task imports its step and calls run()."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

RETRIES = {"retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True}


def _config_and_day() -> tuple[Any, Any]:
    from pipeline.config import load_config
    from pipeline.dates import run_day

    return load_config(), run_day(get_current_context())


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
        from pipeline.config import load_config

        return list(load_config().tickers)

    @task
    def ingest(ticker: str) -> dict[str, Any]:
        from pipeline import ingest

        cfg, day = _config_and_day()
        return ingest.run(cfg, ticker, day)

    @task
    def validate(pulled: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipeline import validate

        cfg, day = _config_and_day()
        try:
            return validate.run(cfg, pulled["ticker"], day, pulled["raw_path"])
        except validate.ValidationFailed as exc:  # bad data: retrying cannot help
            raise AirflowFailException(str(exc)) from exc

    @task
    def features(validated: dict[str, Any]) -> dict[str, Any]:
        from pipeline import features

        cfg, day = _config_and_day()
        return features.run(cfg, validated["ticker"], day)

    features.expand(validated=validate.expand(pulled=ingest.expand(ticker=tickers())))


price_pipeline()
