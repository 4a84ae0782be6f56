"""`make stack` / `stack-down` / `stack-status`: the scale-out, natively, on this machine.

Airflow on CeleryExecutor (db migrate, scheduler, dag-processor, api-server,
triggerer, `stack.celery_workers` workers), an MLflow tracking server with basic
auth, PostgreSQL for Airflow, MLflow and Optuna, Redis as the broker: the services
of docker-compose.yaml as background processes, each in its own process group,
with its log and PID file under `stack.dir`. Their environment is the compose
file's (pipeline/deployment/deploy.py). Starting twice starts only what is not running;
stopping stops exactly the processes whose PID files it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    import psycopg2.extensions

from pipeline.config import Config
from pipeline.deployment import deploy
from pipeline.orchestration.steps import DAILY, RETRAIN

STOP_GRACE_S = 20
LOG_TAIL = 20


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    url: str = ""  # polled until it answers 200; else "up" = alive and `ready_line` in its log
    ready_line: str = ""


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


# --- process bookkeeping: a PID file holds the pid and the process's start time ---


def _pid_file(root: Path, name: str) -> Path:
    return root / "run" / f"{name}.pid"


def log_file(root: Path, name: str) -> Path:
    return root / "logs" / f"{name}.log"


def _start_time(pid: int) -> str | None:
    """When `pid` started: tells our process from a later one that reuses its pid."""
    try:
        return repr(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def running_pid(root: Path, name: str) -> int | None:
    """The pid of service `name` if the process its PID file names is still that process."""
    path = _pid_file(root, name)
    try:
        pid_text, started = path.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == started else None


def start(service: Service, root: Path) -> int:
    log, pid_path = log_file(root, service.name), _pid_file(root, service.name)
    for d in (log.parent, pid_path.parent, service.cwd):
        d.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            service.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=service.env,
            cwd=service.cwd,
            start_new_session=True,  # its own group: stopping it takes its children too
        )
    pid_path.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants. Airflow runs each task in a process group of
    its own, so signalling the service's group alone would leave running tasks behind."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(root: Path, names: list[str], grace_s: float = STOP_GRACE_S) -> list[str]:
    """SIGTERM the services and all their descendants at once, wait, SIGKILL what is left.

    Returns the names that were running. A Celery worker stops warmly on SIGTERM (its
    task's supervisor fails the task, which Airflow then retries).
    """
    pids = {name: running_pid(root, name) for name in names}
    for name in names:
        _pid_file(root, name).unlink(missing_ok=True)
    family = [proc for pid in pids.values() if pid for proc in process_tree(pid)]
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    late = [p for pid in pids.values() if pid for p in process_tree(pid)]  # started meanwhile
    for proc in alive + late:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive + late, timeout=5)
    return [name for name, pid in pids.items() if pid]


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _ready(service: Service, root: Path, since: int) -> bool:
    if service.url:
        return _answers(service.url)
    if service.ready_line:
        with log_file(root, service.name).open("rb") as f:
            f.seek(since)
            return service.ready_line.encode() in f.read()
    return True


class StartFailed(RuntimeError):
    """A service exited or did not become ready; the message has the tail of its log."""


def wait_ready(service: Service, root: Path, since: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = running_pid(root, service.name)
        if pid is None or _is_zombie(pid):
            raise StartFailed(
                f"{service.name} exited at start; the end of {log_file(root, service.name)}:\n"
                + tail(log_file(root, service.name))
            )
        if _ready(service, root, since):
            return
        time.sleep(0.5)
    raise StartFailed(
        f"{service.name} not ready after {timeout_s:.0f} s; the end of "
        f"{log_file(root, service.name)}:\n" + tail(log_file(root, service.name))
    )


# --- the stack ---


def connect(cfg: Config, dbname: str = "postgres", **kw: object) -> psycopg2.extensions.connection:
    """A connection to the local PostgreSQL the stack uses (`stack.postgres_*`)."""
    import psycopg2

    s = cfg.stack
    return psycopg2.connect(
        host=s.postgres_host, port=s.postgres_port, user=s.postgres_user, dbname=dbname, **kw
    )


def databases(cfg: Config) -> tuple[str, str, str]:
    d = cfg.stack.databases
    return d.airflow, d.mlflow, d.optuna


def check_backing_services(cfg: Config) -> None:
    """The machine's PostgreSQL and Redis: the stack uses them, never starts or stops them."""
    import psycopg2
    import redis

    s = cfg.stack
    try:
        connect(cfg, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        raise StartFailed(
            f"PostgreSQL at {s.postgres_host}:{s.postgres_port} (user {s.postgres_user}) is not "
            f"reachable (stack.postgres_*): {str(exc).strip()}"
        ) from exc
    try:
        redis.Redis(host=s.redis_host, port=s.redis_port, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise StartFailed(
            f"Redis at {s.redis_host}:{s.redis_port} is not reachable (stack.redis_*): {exc}"
        ) from exc


def create_databases(cfg: Config) -> list[str]:
    """One database per store on the local PostgreSQL; existing ones are kept."""
    from psycopg2 import sql

    created = []
    with contextlib.closing(connect(cfg)) as conn:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            for name in databases(cfg):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    created.append(name)
    return created


def drop_databases(cfg: Config) -> None:
    """For throw-away stacks (tests, benchmarks): the stack must be down."""
    from psycopg2 import sql

    with contextlib.closing(connect(cfg)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in databases(cfg):
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                cur.execute(drop.format(sql.Identifier(name)))


def dag_registered(cfg: Config, dag_id: str) -> bool:
    with (
        contextlib.closing(connect(cfg, cfg.stack.databases.airflow)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT 1 FROM dag WHERE dag_id = %s", (dag_id,))
        return cur.fetchone() is not None


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
