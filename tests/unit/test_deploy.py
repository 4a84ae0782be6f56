"""deployment/deploy.py: Compose's interpolation, the native stack's environment, secrets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.deployment import deploy


def test_interpolate_follows_compose() -> None:
    v = {"A": "1", "EMPTY": ""}
    assert deploy.interpolate("x${A}y", v) == "x1y"
    assert deploy.interpolate("${EMPTY:-d}/${MISSING:-d}/${A:-d}", v) == "d/d/1"
    assert deploy.interpolate("${MISSING}", v) == ""
    assert deploy.interpolate("no vars", v) == "no vars"
    with pytest.raises(deploy.DeployError, match=r"EMPTY is not set: put it in \.env"):
        deploy.interpolate("${EMPTY:?put it in .env}", v)


def test_native_env_is_the_compose_env_with_local_hosts(cfg: Config, tmp_path: Path) -> None:
    keys = deploy.load_secrets(tmp_path / "secrets.env")
    env = deploy.pipeline_env(cfg, keys)
    template = deploy.compose_section(deploy.PIPELINE_ENV)
    assert set(env) == set(template) | {"AIRFLOW_HOME"}  # nothing added, nothing dropped
    s = cfg.stack
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://postgres:@127.0.0.1:5432/{s.databases.airflow}"
    )
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{s.mlflow_port}"
    assert env["MLFLOW_TRACKING_PASSWORD"] == keys["MLFLOW_PIPELINE_PASSWORD"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == keys["AIRFLOW_JWT_SECRET"]
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"  # the sample ends in 2013
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(cfg.base_dir / "dags")
    ml = deploy.mlflow_env(cfg, keys)
    assert ml["MLFLOW_BACKEND_STORE_URI"].endswith(f"/{s.databases.mlflow}")
    assert ml["MLFLOW_AUTH_ADMIN_PASSWORD"] == keys["MLFLOW_ADMIN_PASSWORD"]
    assert Path(ml["MLFLOW_AUTH_CONFIG_PATH"]).is_file()


def test_stack_processes_get_exactly_that_env(cfg: Config, tmp_path: Path) -> None:
    from pipeline.deployment import stack

    keys = deploy.load_secrets(tmp_path / "secrets.env")
    airflow_env, mlflow_env = deploy.pipeline_env(cfg, keys), deploy.mlflow_env(cfg, keys)
    svcs = stack.services(cfg, keys)
    assert [s.name for s in svcs] == [
        "mlflow", "api-server", "scheduler", "dag-processor", "triggerer", "worker1", "worker2",
    ]  # fmt: skip
    for svc in svcs:
        want = mlflow_env if svc.name == "mlflow" else airflow_env
        assert {k: svc.env[k] for k in want} == want, svc.name
        assert "127.0.0.1" in svc.argv or svc.name not in ("mlflow", "api-server")
    workers = [s for s in svcs if s.name.startswith("worker")]
    assert len({w.env[deploy.WORKER_NAME] for w in workers}) == 2  # distinct hostnames


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "stack" / "secrets.env"
    first = deploy.load_secrets(path)
    assert set(first) == set(deploy.SECRET_NAMES) and all(len(v) >= 24 for v in first.values())
    assert len(set(first.values())) == len(first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert deploy.load_secrets(path) == first  # kept across restarts


def test_worker_hostname_names_the_celery_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(deploy.WORKER_NAME, "worker2@box")
    assert deploy.worker_hostname() == "worker2@box"
    monkeypatch.delenv(deploy.WORKER_NAME)
    assert deploy.worker_hostname() and deploy.worker_hostname() != "worker2@box"


def test_airflow_finds_the_hostname_callable() -> None:
    template = deploy.compose_section(deploy.PIPELINE_ENV)
    module, _, name = template["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is deploy.worker_hostname
    assert os.environ.get(deploy.WORKER_NAME) is None
