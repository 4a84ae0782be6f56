"""The scoring server: MLflow's own scoring app, behind a guard, under uvicorn.

`python -m pipeline serve` execs `python -m pipeline.serving.server` (see
production.serve_command), which runs uvicorn with `serving.workers` processes; each loads
the model once (the pyfunc warms itself) and answers:

  GET  /ping /health /version   MLflow's scoring app, unchanged
  POST /invocations             MLflow's request formats (dataframe_split,
                                dataframe_records, inputs/instances; CSV; Parquet)
                                parsed by MLflow's own `invocations`, run by the guard

The guard (guard.py, a plain ASGI app in front) refuses, before any parsing:
  * a body over `serving.max_body_bytes`: 413, on Content-Length and while a
    streamed (chunked) body arrives;
  * more than `serving.max_in_flight` requests in this process: an immediate 503
    with Retry-After; a request keeps its slot until its work thread is done, so
    work abandoned by a timeout still counts and nothing queues behind it;
  * an unsupported content type (415), a JSON document nested deeper than
    bodies.MAX_JSON_DEPTH or not JSON at all (400), a CSV that is not a table (400),
    a Parquet body whose footer promises more than max_rows rows or
    bodies.PARQUET_UNPACK times max_body_bytes once unpacked (400).
A request not answered within `serving.request_timeout_s` gets a 504. CSV bodies
become the same rows the JSON path sees (every cell a string) so the model's own
checks speak (bodies.py). Every refusal is `{"error_code": ..., "message": ...}` with
a message of at most bodies.MAX_MESSAGE characters: MLflow's stack traces and its
quoting of the whole request ("Failed to predict data '<frame>'") are dropped
(answers.py; the trace goes to this server's log). This module builds the app and
runs the process.

SIGTERM: uvicorn stops accepting, gives in-flight requests `serving.shutdown_grace_s`,
then the process exits; a watchdog makes sure it does within a few seconds.
"""

from __future__ import annotations

import math
import os
from typing import Any

from pipeline.sections import ServingConfig
from pipeline.serving.answers import answer_as_records
from pipeline.serving.follower import maybe_follow
from pipeline.serving.guard import Guard

MODEL_ENV = "PIPELINE_SERVE_MODEL"  # the model URI each worker loads
SETTINGS_ENV = "PIPELINE_SERVE_SETTINGS"  # the serving section, as JSON


def build_app(model: Any, settings: ServingConfig, exit_watchdog: bool = False) -> Guard:
    """MLflow's scoring app for `model` (a loaded pyfunc) behind the guard."""
    from mlflow.pyfunc.scoring_server import init

    answer_as_records(model)
    remember_windows(model, remembered_bytes(settings))
    return Guard(init(model), model, settings, exit_watchdog)


def settings_from_env() -> ServingConfig:
    return ServingConfig.model_validate_json(os.environ[SETTINGS_ENV])


def create_app() -> Guard:
    """uvicorn's factory, once per worker process: load (and warm) the model, guard it."""
    import mlflow

    settings = settings_from_env()
    model = mlflow.pyfunc.load_model(os.environ[MODEL_ENV])
    follow(model, remembered_bytes(settings))
    return build_app(model, settings, exit_watchdog=True)


def forecaster(model: Any) -> Any:
    """The project's forecaster inside a loaded pyfunc, or None for any other model."""
    from mlflow.exceptions import MlflowException

    try:
        python_model = model.unwrap_python_model()
    except (MlflowException, AttributeError):  # another flavour
        return None
    return python_model if hasattr(python_model, "active") else None


def remembered_bytes(settings: ServingConfig) -> int:
    return int(settings.remembered_mb * 2**20)


def remember_windows(model: Any, capacity: int) -> None:
    """A forecaster keeps up to `capacity` bytes of the windows of requests it answered: a
    client asking every session re-sends all but one of them (pipeline/forecasting/memo.py)."""
    python_model = forecaster(model)
    if python_model is not None and hasattr(python_model, "remember"):
        python_model.remember(capacity)


def follow(model: Any, remembered: int) -> None:
    """The alias follower for a forecaster this server was started to follow (the server
    starts it, not the model: a model loaded anywhere else never polls the registry); the
    versions it loads keep `remembered` bytes of windows, as the first."""
    python_model = forecaster(model)
    if python_model is not None:
        maybe_follow(python_model, remembered)  # only with PIPELINE_FOLLOW_MODEL set


def main() -> None:
    import uvicorn

    settings = settings_from_env()
    uvicorn.run(
        "pipeline.serving.server:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        timeout_worker_healthcheck=60,  # a worker loading TensorFlow is slow to answer
        server_header=False,
    )


if __name__ == "__main__":
    main()
