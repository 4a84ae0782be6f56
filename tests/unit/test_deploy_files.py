"""docker-compose.yaml cannot be brought up here (no Docker engine): check what can be."""

import sys
from pathlib import Path

import yaml

from pipeline.cli import build_parser
from pipeline.config import load_config

ROOT = Path(__file__).parents[2]


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
        "airflow-worker",
        "mlflow",
        "model-server",
    } <= set(services)
    worker = services["airflow-worker"]["environment"]
    assert worker["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert worker["OPTUNA_STORAGE"].startswith("postgresql")
    assert "basic-auth" in services["mlflow"]["command"]


def test_compose_environment_is_a_valid_pipeline_config() -> None:
    env = _compose()["services"]["model-server"]["environment"]
    cfg = load_config(environ={k: str(v) for k, v in env.items()})
    assert cfg.tracking_uri == "http://mlflow:5000" and cfg.serving.host == "0.0.0.0"
    assert cfg.optuna_storage.startswith("postgresql+psycopg2://")


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
    ):
        assert importlib.util.find_spec(module) is not None, module
