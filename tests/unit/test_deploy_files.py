"""docker-compose.yaml cannot be brought up here (no Docker engine): check what can be.

The same environment is brought up natively by `make stack` (tests/integration/test_stack.py).
"""

import sys
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser
from pipeline.config import load_config
from pipeline.deployment import deploy

ROOT = Path(__file__).parents[2]
SECRETS = {n: f"s3cret-{n.lower()}" for n in deploy.SECRET_NAMES} | {"POSTGRES_PASSWORD": "pg"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_has_the_scale_out_services() -> None:
    services = _compose()["services"]
    assert {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "mlflow",
        "mlflow-init",
        "model-server",
    } <= set(services)
    assert "basic-auth" in services["mlflow"]["command"]


def test_every_airflow_service_gets_the_one_pipeline_env() -> None:
    compose = _compose()
    shared = compose[deploy.PIPELINE_ENV]
    for name, service in compose["services"].items():
        if name.startswith("airflow-"):
            assert service["environment"] == shared, name
    assert compose["services"]["mlflow"]["environment"] == compose[deploy.MLFLOW_ENV]


def test_compose_env_with_its_defaults_is_a_valid_pipeline_config() -> None:
    env = deploy.render(deploy.PIPELINE_ENV, SECRETS)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://pipeline:pg@postgres:5432/airflow"
    )
    cfg = load_config(environ=env)
    assert cfg.tracking_uri == "http://mlflow:5000" and cfg.tune.workers == 2
    assert cfg.optuna_storage == "postgresql+psycopg2://pipeline:pg@postgres:5432/optuna"


@pytest.mark.parametrize("secret", ["AIRFLOW_JWT_SECRET", "MLFLOW_PIPELINE_PASSWORD"])
def test_compose_refuses_a_missing_secret(secret: str) -> None:
    with pytest.raises(deploy.DeployError, match=secret):
        deploy.render(deploy.PIPELINE_ENV, {**SECRETS, secret: ""})


def test_no_secret_has_a_default_and_ports_bind_localhost() -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    assert "change-me" not in text
    for name in ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "MLFLOW_ADMIN_PASSWORD"):
        assert f"${{{name}:-" not in text, name
    for service in _compose()["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("${BIND_ADDRESS:-127.0.0.1}:"), port
    example = (ROOT / ".env.example").read_text()
    assert all(f"{n}=\n" in example for n in ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET"))
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_image_runs_as_a_user_and_leaves_local_state_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "\nUSER pipeline" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "state", "mlruns", ".env"} <= set(ignored)


def test_compose_commands_exist_in_the_image() -> None:
    bin_dir = Path(sys.executable).parent
    for name, service in _compose()["services"].items():
        if service.get("image", "").startswith("price-pipeline"):
            argv = service["command"].split()
            assert (bin_dir / argv[0]).exists(), (name, argv[0])
            if argv[:3] == ["python", "-m", "pipeline"]:
                build_parser().parse_args(argv[3:])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv pip install --system -r requirements.lock" in dockerfile
    assert "uv pip install --system --no-deps -e ." in dockerfile


def test_scale_out_providers_are_installed() -> None:
    import importlib.util

    for module in (
        "airflow.providers.celery",
        "airflow.providers.postgres",
        "psycopg2",
        "flask_wtf",
        "redis",
    ):
        assert importlib.util.find_spec(module) is not None, module
    # the Celery executor's own imports (celery 5.7 broke them)
    from airflow.providers.celery.executors import celery_executor_utils  # noqa: F401


def test_mlflow_reads_the_auth_settings_with_no_password_and_a_credential_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/mlflow-auth.ini, read by MLflow's own reader as both scales' servers read it."""
    from mlflow.server.auth.config import read_auth_config

    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ROOT / "deploy" / "mlflow-auth.ini"))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    auth = read_auth_config()
    assert auth.admin_password is None  # it comes from the environment only
    assert auth.default_permission == "READ"
    # each authenticated request would otherwise re-check a salted hash (about 0.3 s here)
    assert 0 < auth.auth_cache_ttl_seconds <= 60
