"""Serving: MLflow's scoring app on the `production` alias of a model, following it.

`python -m pipeline serve` (and `make serve`) runs MLflow's own scoring app behind
a guard (limits, short refusals; see pipeline/serving/server.py) under uvicorn, in the
project's environment. With PIPELINE_FOLLOW_MODEL set, the served pyfunc polls the
registry and swaps in the version `production` moves to (pipeline/serving/follower.py).
"""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING

from pipeline.layout import alias_uri
from pipeline.serving.follower import FOLLOW_ENV, INTERVAL_ENV
from pipeline.serving.server import MODEL_ENV, SETTINGS_ENV

if TYPE_CHECKING:
    from pipeline.config import Config


def production_uri(cfg: Config, ticker: str) -> str:
    from pipeline.lifecycle.registry import PRODUCTION, model_name

    return alias_uri(model_name(cfg, ticker), PRODUCTION)


def serve_command(
    cfg: Config, model_uri: str, port: int | None = None, follow: bool = True
) -> tuple[list[str], dict[str, str]]:
    """The guarded scoring server (pipeline.serving.server) in this environment; with `follow`,
    the model tracks its alias. Its settings travel to every worker in the environment."""
    settings = cfg.serving.model_copy(update={"port": port or cfg.serving.port})
    argv = [sys.executable, "-m", "pipeline.serving.server"]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": cfg.tracking_uri,
        "MLFLOW_REGISTRY_URI": cfg.tracking_uri,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # One window per request is too small to split across threads: TF's thread pools
        # would only hand work over and spin, stealing the cores from the event loop
        # (workers, not threads, are how this server scales).
        "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS", "1"),
        "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS", "1"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # MLflow's own timeout (its /ping /health /version); /invocations has the guard's
        "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(math.ceil(settings.request_timeout_s)),
        MODEL_ENV: model_uri,
        SETTINGS_ENV: settings.model_dump_json(),
    }
    if follow:
        env.update({FOLLOW_ENV: model_uri, INTERVAL_ENV: str(cfg.serving.reload_interval_s)})
    else:
        env.pop(FOLLOW_ENV, None)
        env.pop(INTERVAL_ENV, None)
    return argv, env


def serve(cfg: Config, ticker: str, port: int | None = None) -> int:
    """Serve the ticker's production model in this process's place (exec)."""
    model_uri = production_uri(cfg, ticker)
    argv, env = serve_command(cfg, model_uri, port)
    s = cfg.serving
    print(
        f"serving {model_uri} at http://{s.host}:{port or s.port}/invocations "
        f"(follows the alias; {s.workers} worker(s), at most {s.max_in_flight} requests "
        f"in flight each, bodies up to {s.max_body_bytes} bytes)",
        flush=True,
    )
    os.execve(argv[0], argv, env)
    return 0  # not reached
