"""Serving: MLflow's scoring app on the `production` alias of a model, following it.

`python -m pipeline serve` (and `make serve`) runs MLflow's own scoring app behind
a guard (limits, short refusals; see pipeline/serving/server.py) under uvicorn, in the
project's environment. With PIPELINE_FOLLOW_MODEL set, the served pyfunc polls the
registry; when `production` moves (DAG, CLI or rollback) it loads and warms the new
version in the background and swaps it in atomically: requests in flight finish on
the old one, none fail, nobody restarts.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from pipeline.layout import alias_uri, parse_alias_uri, version_uri
from pipeline.serving.server import MODEL_ENV, SETTINGS_ENV

if TYPE_CHECKING:
    from pipeline.config import Config

log = logging.getLogger(__name__)
FOLLOW_ENV = "PIPELINE_FOLLOW_MODEL"  # the alias URI the server was started with
INTERVAL_ENV = "PIPELINE_FOLLOW_INTERVAL_S"
_started = threading.Lock()
# Set while the alias points at a version this server could not load (the guard's /health
# answers 503 with it); cleared once a version loads.
stale: str | None = None


class AliasFollower(threading.Thread):
    """Polls an alias and hot-swaps the owner's active forecaster when it moves."""

    def __init__(self, owner: Any, uri: str, interval_s: float):
        super().__init__(name="alias-follower", daemon=True)
        self.owner, self.interval_s = owner, interval_s
        self.name_, self.alias = parse_alias_uri(uri)
        from mlflow import MlflowClient

        self.client = MlflowClient()
        self.version = self._current()  # what the server resolved at start
        owner.served_version = self.version or ""

    def _current(self) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.name_, self.alias).version)
        except Exception as exc:  # registry briefly unreachable: keep serving what we have
            log.warning("cannot resolve %s@%s: %s", self.name_, self.alias, exc)
            return None

    def swap_if_moved(self) -> bool:
        global stale
        latest = self._current()
        if latest is not None and latest == self.version:
            stale = None  # the alias is (back) on what this server serves
        if latest is None or latest == self.version:
            return False
        import mlflow

        log.warning("%s@%s moved v%s -> v%s: loading", self.name_, self.alias, self.version, latest)
        try:
            fresh = mlflow.pyfunc.load_model(version_uri(self.name_, latest)).unwrap_python_model()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            stale = (
                f"{self.name_}@{self.alias} is v{latest}, which could not be loaded "
                f"({type(exc).__name__}: {first}); still serving v{self.version}"
            )
            raise
        fresh.served_version = latest
        self.owner.active = fresh  # one reference assignment: atomic for readers
        self.owner.served_version = latest
        self.version = latest
        stale = None
        log.warning("now serving %s v%s", self.name_, latest)
        return True

    def run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval_s):
            try:
                self.swap_if_moved()
            except Exception:  # a broken new version must not take the server down
                log.exception(
                    "could not load the new %s version; still serving v%s", self.name_, self.version
                )


def maybe_follow(owner: Any) -> None:
    """Start one follower per process, for the model the server was started with."""
    uri = os.environ.get(FOLLOW_ENV)
    if not uri or not _started.acquire(blocking=False):
        return
    AliasFollower(owner, uri, float(os.environ.get(INTERVAL_ENV, "5"))).start()


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
