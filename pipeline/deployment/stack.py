"""`make stack` / `stack-down` / `stack-status`: the scale-out, natively, on this machine.

Airflow on CeleryExecutor (db migrate, scheduler, dag-processor, api-server,
triggerer, `stack.celery_workers` workers), an MLflow tracking server with basic
auth, PostgreSQL for Airflow, MLflow and Optuna, Redis as the broker: the services
of docker-compose.yaml as background processes, each in its own process group,
with its log and PID file under `stack.dir`. Their environment is the compose
file's (pipeline/deployment/deploy.py). Starting twice starts only what is not running;
stopping stops exactly the processes whose PID files it wrote. This module is the stack's
services and its start, stop and status; the PID files and process trees are
pipeline/deployment/processes.py's, the PostgreSQL databases pipeline/deployment/backing.py's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.config import Config
from pipeline.deployment import deploy
from pipeline.deployment.backing import check_backing_services, create_databases, dag_registered
from pipeline.deployment.processes import (
    Service,
    StartFailed,
    log_file,
    running_pid,
    start,
    stop,
    tail,
    wait_ready,
)
from pipeline.schedule import DAILY, RETRAIN


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def worker_names(cfg: Config) -> list[str]:
    return [f"worker{i + 1}" for i in range(cfg.stack.celery_workers)]


def services(cfg: Config, keys: dict[str, str]) -> list[Service]:
    """Every process of the stack, in start order."""
    s, root = cfg.stack, deploy.stack_dir(cfg)
    base = {**os.environ, **deploy.pipeline_env(cfg, keys)}
    airflow = _bin("airflow")
    mlflow_args = f"server --host {s.host} --port {s.mlflow_port} --app-name basic-auth"
    out = [
        Service(
            "mlflow",
            [_bin("mlflow"), *mlflow_args.split(), "--serve-artifacts", "--workers", "2"],
            {**os.environ, **deploy.mlflow_env(cfg, keys)},
            root / "mlflow",  # its working directory: the auth DB (deploy/mlflow-auth.ini)
            url=f"http://{s.host}:{s.mlflow_port}/health",
        ),
        Service(
            "api-server",
            [airflow, "api-server", "--host", s.host, "--port", str(s.airflow_port)],
            base,
            root,
            url=f"http://{s.host}:{s.airflow_port}/api/v2/monitor/health",
        ),
        Service("scheduler", [airflow, "scheduler"], base, root),
        Service("dag-processor", [airflow, "dag-processor"], base, root),
        Service("triggerer", [airflow, "triggerer", "--skip-serve-logs"], base, root),
    ]
    host = deploy.worker_hostname()
    for name in worker_names(cfg):
        worker = f"celery worker --concurrency 1 --celery-hostname {name}@{host} --skip-serve-logs"
        env = {**base, deploy.WORKER_NAME: f"{name}@{host}"}
        out.append(Service(name, [airflow, *worker.split()], env, root, ready_line=" ready."))
    return out


def write_env_file(root: Path, env: dict[str, str]) -> Path:
    """The stack's environment for a shell (`set -a; . state/stack/stack.env; set +a`)."""
    path = root / "stack.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds passwords
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
    return path


def _migrate(env: dict[str, str], root: Path) -> None:
    log = log_file(root, "migrate")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        rc = subprocess.call(
            [_bin("airflow"), "db", "migrate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
    if rc != 0:
        raise StartFailed(f"airflow db migrate failed (exit {rc}); the end of {log}:\n{tail(log)}")


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise StartFailed(f"{what}: not after {timeout_s:.0f} s")
        time.sleep(1)


def up(cfg: Config, echo: Callable[[str], None] = print) -> int:
    root = deploy.stack_dir(cfg)
    try:
        check_backing_services(cfg)
    except StartFailed as exc:
        echo(f"stack did not start: {exc}")
        return 1
    keys = deploy.load_secrets(root / "secrets.env")  # makes `root`
    created = create_databases(cfg)
    if created:
        echo(f"created databases: {', '.join(created)}")
    svcs = services(cfg, keys)
    stack_env = deploy.pipeline_env(cfg, keys)
    env = {**os.environ, **stack_env}
    env_file = write_env_file(root, stack_env)
    started: list[str] = []
    try:
        _migrate(env, root)
        pending: list[tuple[Service, int]] = []
        for svc in svcs:
            if (pid := running_pid(root, svc.name)) is not None:
                echo(f"{svc.name:14s} already running (pid {pid})")
                continue
            log = log_file(root, svc.name)
            since = log.stat().st_size if log.exists() else 0
            pid = start(svc, root)
            started.append(svc.name)
            echo(f"{svc.name:14s} started (pid {pid}, log {log})")
            pending.append((svc, since))
        # started together (none needs another to start; tasks, which need them all, run
        # only once `up` is done), waited for in turn: their start-ups overlap
        for svc, since in pending:
            wait_ready(svc, root, since, cfg.stack.start_timeout_s)
            if svc.name == "mlflow":  # its accounts, before any task logs to it
                deploy.ensure_mlflow_users(env["MLFLOW_TRACKING_URI"], keys)
        _wait_for(
            f"{DAILY} and {RETRAIN} parsed into Airflow's database",
            lambda: dag_registered(cfg, DAILY) and dag_registered(cfg, RETRAIN),
            cfg.stack.start_timeout_s,
        )
    except StartFailed as exc:
        echo(f"stack did not start: {exc}")
        stop(root, started)
        echo(f"stopped what this call started: {', '.join(reversed(started)) or 'nothing'}")
        return 1
    _print_logins(cfg, keys, root, env_file, echo)
    return 0


def _print_logins(
    cfg: Config, keys: dict[str, str], root: Path, env_file: Path, echo: Callable[[str], None]
) -> None:
    from pipeline.deployment.ui import airflow_login

    s = cfg.stack
    echo("")
    login = airflow_login(root / "airflow", wait_s=10)
    with contextlib.suppress(ValueError, TypeError, KeyError):  # {"admin": "<password>"}
        login = json.loads(login)["admin"]
    echo(f"Airflow  http://{s.host}:{s.airflow_port}   admin / {login}")
    echo(
        f"MLflow   http://{s.host}:{s.mlflow_port}   admin / {keys['MLFLOW_ADMIN_PASSWORD']}; "
        f"{deploy.PIPELINE_USER} / {keys['MLFLOW_PIPELINE_PASSWORD']} (the pipeline, writes); "
        f"{deploy.VIEWER_USER} / {keys['MLFLOW_VIEWER_PASSWORD']} (read-only)"
    )
    echo(f"Optuna   {deploy.pipeline_env(cfg, keys)['OPTUNA_STORAGE']}")
    echo(f"secrets  {root / 'secrets.env'} (mode 0600, kept across restarts)")
    echo(f"its environment, for airflow/mlflow commands:  set -a; . {env_file}; set +a")
    echo(
        f"then e.g.  .venv/bin/airflow dags trigger {RETRAIN} "
        "--logical-date 2013-03-01T22:30:00+00:00  (then the same for price_daily)"
    )
    echo("stop with  make stack-down")


def down(cfg: Config, echo: Callable[[str], None] = print) -> int:
    root = deploy.stack_dir(cfg)
    stopped = stop(root, list(reversed(_names(cfg, root))))
    echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _names(cfg: Config, root: Path) -> list[str]:
    """Every service name, including workers from an earlier, larger stack."""
    fixed = ["mlflow", "api-server", "scheduler", "dag-processor", "triggerer"]
    extra = (
        sorted(p.stem for p in (root / "run").glob("worker*.pid"))
        if (root / "run").exists()
        else []
    )
    return fixed + sorted(set(worker_names(cfg)) | set(extra))


def status(cfg: Config, echo: Callable[[str], None] = print) -> int:
    """One line per service; exit 0 when every one is up, 1 otherwise."""
    root = deploy.stack_dir(cfg)
    s = cfg.stack
    urls = {
        "mlflow": f"http://{s.host}:{s.mlflow_port}",
        "api-server": f"http://{s.host}:{s.airflow_port}",
    }
    all_up = True
    for name in _names(cfg, root):
        pid = running_pid(root, name)
        all_up &= pid is not None
        state = f"up (pid {pid})" if pid else "down"
        echo(f"{name:14s} {state:16s} {urls.get(name, '')}".rstrip())
    return 0 if all_up else 1
