"""DAG runs on the stack, as Airflow's metadata records them: trigger, wait, read.

What `bench.scaleout` and the stack's tests need: a throw-away stack, a run
triggered through the scheduler (`airflow dags trigger`), its end, and where and
when each task instance ran.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config
from pipeline.deployment import deploy
from pipeline.deployment.processes import sigterm_unwinds
from pipeline.schedule import RETRAIN

DONE = ("success", "failed")


@dataclass(frozen=True)
class TaskRun:
    task_id: str
    map_index: int
    state: str | None
    hostname: str
    try_number: int
    start: dt.datetime | None
    end: dt.datetime | None

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.start and self.end else 0.0


def sql(cfg: Config, db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    from pipeline.deployment.backing import connect

    with contextlib.closing(connect(cfg, db)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def trigger(cfg: Config, logical_date: str, run_id: str, dag_id: str = RETRAIN) -> None:
    """`airflow dags trigger` with the stack's environment, as a user would."""
    keys = deploy.load_secrets(deploy.stack_dir(cfg) / "secrets.env")
    out = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "dags", "trigger", dag_id,
         "--logical-date", logical_date, "--run-id", run_id],
        env={**os.environ, **deploy.pipeline_env(cfg, keys)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"airflow dags trigger failed: {out.stdout[-1500:]}{out.stderr[-1500:]}")


def run_state(cfg: Config, run_id: str) -> str:
    rows = sql(
        cfg, cfg.stack.databases.airflow, "SELECT state FROM dag_run WHERE run_id = %s", run_id
    )
    return str(rows[0][0]) if rows else "missing"


def run_span(cfg: Config, run_id: str) -> tuple[dt.datetime, dt.datetime]:
    rows = sql(cfg, cfg.stack.databases.airflow,
               "SELECT start_date, end_date FROM dag_run WHERE run_id = %s", run_id)  # fmt: skip
    return rows[0][0], rows[0][1]


def task_runs(cfg: Config, run_id: str) -> list[TaskRun]:
    """Every task instance of the run, in start order (current tries only)."""
    rows = sql(
        cfg,
        cfg.stack.databases.airflow,
        "SELECT task_id, map_index, state, hostname, try_number, start_date, end_date "
        "FROM task_instance WHERE run_id = %s ORDER BY start_date NULLS LAST",
        run_id,
    )
    return [TaskRun(*row) for row in rows]


def wait(cfg: Config, run_id: str, timeout_s: float, poll_s: float = 2) -> str:
    """The run's final state; TimeoutError (with its tasks) if it does not end in time."""
    deadline = time.monotonic() + timeout_s
    while (state := run_state(cfg, run_id)) not in DONE:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_id} still {state}: {task_runs(cfg, run_id)}")
        time.sleep(poll_s)
    return state


def busy_seconds(spans: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Time covered by at least one span (overlapping parallel tasks count once)."""
    total, reach = 0.0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += (end - start).total_seconds()
            reach = end
        elif end > reach:
            total += (end - reach).total_seconds()
            reach = end
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flush_redis(cfg: Config) -> None:
    import redis

    s = cfg.stack
    redis.Redis(host=s.redis_host, port=s.redis_port, db=s.redis_db).flushdb()


@contextlib.contextmanager
def throwaway_stack(
    root: Path, env: dict[str, str], redis_db: int = 13
) -> Iterator[tuple[Config, dict[str, str]]]:
    """A whole stack in throw-away databases, Redis DB, ports and directory, for tests and
    benchmarks: `env` adds settings (budget, `PIPELINE__STACK__CELERY_WORKERS`, ...).
    Brought up with `python -m pipeline stack up` and torn down whatever happens; yields
    its config and the environment it was started with."""
    suffix = uuid.uuid4().hex[:8]
    settings = {
        "PIPELINE__STACK__DIR": str(root / "stack"),
        "PIPELINE__STACK__DATABASES__AIRFLOW": f"throwaway_airflow_{suffix}",
        "PIPELINE__STACK__DATABASES__MLFLOW": f"throwaway_mlflow_{suffix}",
        "PIPELINE__STACK__DATABASES__OPTUNA": f"throwaway_optuna_{suffix}",
        "PIPELINE__STACK__AIRFLOW_PORT": str(_free_port()),
        "PIPELINE__STACK__MLFLOW_PORT": str(_free_port()),
        "PIPELINE__STACK__REDIS_DB": str(redis_db),  # not the default stack's 0
        **env,
    }
    cfg = load_config(environ=settings)
    # the caller's own stores must not leak into the stack's processes
    base = {k: v for k, v in os.environ.items() if k not in _STORE_KEYS}
    full = {**base, **settings}
    cli = [sys.executable, "-m", "pipeline", "stack"]
    _flush_redis(cfg)
    with sigterm_unwinds():  # a benchmark stopped with kill takes its stack down too
        try:
            out = subprocess.run(
                [*cli, "up"], env=full, capture_output=True, text=True, timeout=600
            )
            if out.returncode != 0:
                raise RuntimeError(f"stack up failed:\n{out.stdout[-4000:]}{out.stderr[-2000:]}")
            yield cfg, full
        finally:
            subprocess.run([*cli, "down"], env=full, capture_output=True, timeout=300)
            from pipeline.deployment.backing import drop_databases

            drop_databases(cfg)
            _flush_redis(cfg)


_STORE_KEYS = ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "PIPELINE__STATE_DIR", "PIPELINE_CONFIG")
