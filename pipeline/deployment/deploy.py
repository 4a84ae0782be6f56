"""The scale-out deployment's environment, written once for both scales.

docker-compose.yaml's `x-pipeline-env` (every Airflow process, the model server)
and `x-mlflow-env` (the tracking server) are the one description. Compose fills
their `${...}` from `.env`; `make stack` fills them from the config's `stack`
section and generated secrets, so the native processes get exactly what the
containers get, with this machine's hosts and ports.

Importing this module stays cheap: Airflow imports `worker_hostname` in every task.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from pipeline.config import Config

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"
PIPELINE_ENV, MLFLOW_ENV = "x-pipeline-env", "x-mlflow-env"
SECRET_NAMES = (
    "AIRFLOW_JWT_SECRET",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_SECRET_KEY",
    "MLFLOW_PIPELINE_PASSWORD",
    "MLFLOW_VIEWER_PASSWORD",
)
PIPELINE_USER, VIEWER_USER, ADMIN_USER = "pipeline", "viewer", "admin"
WORKER_NAME = "PIPELINE_WORKER_NAME"  # set per Celery worker process by `make stack`

# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error} (the forms used here).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


class DeployError(RuntimeError):
    """A deployment setting is missing or wrong; the message names it."""


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Fill `${...}` as Compose does; a required variable left empty is an error."""

    def fill(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = variables.get(name, "")
        if op == ":-":
            return value or arg
        if op == ":?" and not value:
            raise DeployError(f"{name} is not set: {arg}")
        return value

    return _VARIABLE.sub(fill, text)


def compose_section(name: str, compose_file: Path = COMPOSE_FILE) -> dict[str, str]:
    """One `x-...` mapping of docker-compose.yaml, uninterpolated."""
    section = yaml.safe_load(compose_file.read_text())[name]
    return {k: str(v) for k, v in section.items()}


def render(name: str, variables: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(v, variables) for k, v in compose_section(name).items()}


def load_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets: generated on first start (never a default), kept 0600."""
    found: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key in SECRET_NAMES:
                found[key] = value
    missing = [n for n in SECRET_NAMES if not found.get(n)]
    if missing:
        found.update({n: secrets.token_urlsafe(24) for n in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{k}={found[k]}\n" for k in SECRET_NAMES))
    os.chmod(path, 0o600)
    return found


def stack_dir(cfg: Config) -> Path:
    return cfg.resolve(cfg.stack.dir)


def variables(cfg: Config, keys: dict[str, str]) -> dict[str, str]:
    """The values Compose reads from `.env`, for the native stack on this machine."""
    s, root = cfg.stack, stack_dir(cfg)
    return {
        **keys,
        "DAGS_FOLDER": str(cfg.base_dir / "dags"),
        "TASK_RETRY_DELAY_S": str(s.task_retry_delay_s),
        "TASK_HEARTBEAT_TIMEOUT_S": str(s.task_heartbeat_timeout_s),
        "AIRFLOW_API_HOST": s.host,
        "AIRFLOW_API_PORT": str(s.airflow_port),
        "POSTGRES_USER": s.postgres_user,
        "POSTGRES_PASSWORD": "",  # the local server trusts local connections
        "POSTGRES_HOST": s.postgres_host,
        "POSTGRES_PORT": str(s.postgres_port),
        "AIRFLOW_DB": s.databases.airflow,
        "MLFLOW_DB": s.databases.mlflow,
        "OPTUNA_DB": s.databases.optuna,
        "REDIS_HOST": s.redis_host,
        "REDIS_PORT": str(s.redis_port),
        "REDIS_DB": str(s.redis_db),
        # The embedded sample ends in 2013: a cron run for today could only fail its
        # freshness check, so on the sample the stack runs what is triggered or backfilled.
        "SCHEDULED_RUNS": str(cfg.source.kind != "sample"),
        "MLFLOW_HOST": s.host,
        "MLFLOW_PORT": str(s.mlflow_port),
        "MLFLOW_PIPELINE_USER": PIPELINE_USER,
        "PIPELINE_STATE_DIR": str(root / "data"),
        "TUNE_WORKERS": str(s.tune_workers),
        "MLFLOW_ARTIFACTS": str(root / "mlartifacts"),
        "MLFLOW_AUTH_CONFIG": str(cfg.base_dir / "deploy" / "mlflow-auth.ini"),
    }


def pipeline_env(cfg: Config, keys: dict[str, str]) -> dict[str, str]:
    """What every Airflow process of the stack gets (compose: `x-pipeline-env`)."""
    return {
        **render(PIPELINE_ENV, variables(cfg, keys)),
        "AIRFLOW_HOME": str(stack_dir(cfg) / "airflow"),
    }


def mlflow_env(cfg: Config, keys: dict[str, str]) -> dict[str, str]:
    """What the tracking server gets (compose: `x-mlflow-env`)."""
    return render(MLFLOW_ENV, variables(cfg, keys))


def worker_hostname() -> str:
    """Airflow's `hostname_callable`: the Celery worker's name where several share a host."""
    return os.environ.get(WORKER_NAME) or socket.getfqdn()


@contextlib.contextmanager
def _as_admin(password: str) -> Iterator[None]:
    """MLflow's clients read their login from the environment: the admin's, only meanwhile."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(zip(names, (ADMIN_USER, password), strict=True))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_mlflow_users(tracking_uri: str, keys: dict[str, str]) -> dict[str, str]:
    """The pipeline's own account (it manages what it creates) and a read-only `viewer`.

    Idempotent; runs as the admin. Returns what it did per user.
    """
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(tracking_uri)
    done: dict[str, str] = {}
    with _as_admin(keys["MLFLOW_ADMIN_PASSWORD"]):
        for user, key in (
            (PIPELINE_USER, "MLFLOW_PIPELINE_PASSWORD"),
            (VIEWER_USER, "MLFLOW_VIEWER_PASSWORD"),
        ):
            if not keys.get(key):
                continue
            try:
                auth.get_user(user)
                auth.update_user_password(user, keys[key])
                done[user] = "exists"
            except RestException:
                auth.create_user(user, keys[key])
                done[user] = "created"
    return done
