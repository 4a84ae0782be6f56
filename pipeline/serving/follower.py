"""The alias follower: a served forecaster tracks its registered model's alias.

With PIPELINE_FOLLOW_MODEL set (production.serve_command sets it), each server process
starts one follower for the model it loaded (server.create_app starts it, not the model:
a model loaded anywhere else never polls the registry). When the alias moves (DAG, CLI or
rollback) it loads and warms the new version in the background and swaps it in
atomically: requests in flight finish on the old one, none fail, nobody restarts.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from pipeline.layout import parse_alias_uri, version_uri

log = logging.getLogger(__name__)
FOLLOW_ENV = "PIPELINE_FOLLOW_MODEL"  # the alias URI the server was started with
INTERVAL_ENV = "PIPELINE_FOLLOW_INTERVAL_S"
_started = threading.Lock()
# Set while the alias points at a version this server could not load (the guard's /health
# answers 503 with it); cleared once a version loads.
stale: str | None = None


class AliasFollower(threading.Thread):
    """Polls an alias and hot-swaps the owner's active forecaster when it moves."""

    def __init__(self, owner: Any, uri: str, interval_s: float, remembered: int = 0):
        """`remembered`: the bytes of windows each version it loads keeps (memo.py)."""
        super().__init__(name="alias-follower", daemon=True)
        self.owner, self.interval_s, self.remembered = owner, interval_s, remembered
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
            if hasattr(fresh, "remember"):
                fresh.remember(self.remembered)  # windows kept, as the first version
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            stale = (
                f"{self.name_}@{self.alias} is v{latest}, which could not be loaded "
                f"({type(exc).__name__}: {first}); still serving v{self.version}"
            )
            raise
        fresh.served_version = latest
        self.owner.active = fresh  # one reference assignment: atomic for readers
        if self.owner is not fresh and hasattr(self.owner, "remember"):
            self.owner.remember(0)  # the first version's kept windows: no longer asked for
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


def maybe_follow(owner: Any, remembered: int = 0) -> None:
    """Start one follower per process, for the model the server was started with; the
    versions it loads keep `remembered` bytes of windows (memo.py)."""
    uri = os.environ.get(FOLLOW_ENV)
    if not uri or not _started.acquire(blocking=False):
        return
    AliasFollower(owner, uri, float(os.environ.get(INTERVAL_ENV, "5")), remembered).start()
