import os
import sys
from pathlib import Path

import pytest

from pipeline import serving
from pipeline.config import Config
from pipeline.layout import parse_alias_uri

URI = "models:/price_lstm_GOOG@production"


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_production_uri_is_the_alias_of_the_tickers_model(make_cfg) -> None:
    assert serving.production_uri(make_cfg(), "GOOG") == URI
    cfg = make_cfg(registry__model_prefix="fc")
    assert parse_alias_uri(serving.production_uri(cfg, "MSFT")) == ("fc_MSFT", "production")


def test_serve_command_runs_mlflow_from_this_env_on_localhost(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(serving.FOLLOW_ENV, raising=False)
    argv, env = serving.serve_command(cfg, URI)
    bin_dir = Path(sys.executable).parent
    assert argv[:4] == [str(bin_dir / "mlflow"), "models", "serve", "-m"] and argv[4] == URI
    assert Path(argv[0]).exists()
    assert _flag(argv, "--env-manager") == "local"
    assert _flag(argv, "-h") == "127.0.0.1" and _flag(argv, "-p") == "5001"
    assert env["PATH"].split(os.pathsep)[0] == str(bin_dir)  # mlflow starts uvicorn from PATH
    assert env["MLFLOW_TRACKING_URI"] == env["MLFLOW_REGISTRY_URI"] == cfg.tracking_uri
    assert env[serving.FOLLOW_ENV] == URI and env[serving.INTERVAL_ENV] == "5.0"


def test_serve_command_port_host_and_no_follow(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serving.FOLLOW_ENV, raising=False)
    cfg = make_cfg(serving__host="0.0.0.0", serving__reload_interval_s=1.5)
    argv, env = serving.serve_command(cfg, URI, port=6001, follow=False)
    assert _flag(argv, "-h") == "0.0.0.0" and _flag(argv, "-p") == "6001"
    assert serving.FOLLOW_ENV not in env and serving.INTERVAL_ENV not in env
    _, env = serving.serve_command(cfg, URI)
    assert env[serving.INTERVAL_ENV] == "1.5"


def test_no_follower_without_the_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serving.FOLLOW_ENV, raising=False)

    class Owner:
        served_version = "unchanged"

    owner = Owner()
    serving.maybe_follow(owner)
    assert owner.served_version == "unchanged"
    assert not serving._started.locked()  # a later start with the variable may still follow
