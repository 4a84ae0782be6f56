import sys

import pytest

from pipeline.config import Config
from pipeline.layout import parse_alias_uri
from pipeline.sections import ServingConfig
from pipeline.serving import follower, production, server

URI = "models:/price_lstm_GOOG@production"


def test_production_uri_is_the_alias_of_the_tickers_model(make_cfg) -> None:
    assert production.production_uri(make_cfg(), "GOOG") == URI
    cfg = make_cfg(registry__model_prefix="fc")
    assert parse_alias_uri(production.production_uri(cfg, "MSFT")) == ("fc_MSFT", "production")


def test_serve_command_runs_the_guarded_server_from_this_env(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(follower.FOLLOW_ENV, raising=False)
    argv, env = production.serve_command(cfg, URI)
    assert argv == [sys.executable, "-m", "pipeline.serving.server"]
    assert env["MLFLOW_TRACKING_URI"] == env["MLFLOW_REGISTRY_URI"] == cfg.tracking_uri
    assert env[server.MODEL_ENV] == URI
    settings = ServingConfig.model_validate_json(env[server.SETTINGS_ENV])
    assert settings == cfg.serving and (settings.host, settings.port) == ("127.0.0.1", 5001)
    assert env["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] == "10"  # MLflow's 60 s default: no
    assert env[follower.FOLLOW_ENV] == URI and env[follower.INTERVAL_ENV] == "5.0"


def test_serve_command_port_limits_and_no_follow(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(follower.FOLLOW_ENV, "models:/left_over@production")
    cfg = make_cfg(
        serving__host="0.0.0.0",
        serving__reload_interval_s=1.5,
        serving__workers=3,
        serving__max_in_flight=7,
        serving__request_timeout_s=2.5,
    )
    _, env = production.serve_command(cfg, URI, port=6001, follow=False)
    settings = ServingConfig.model_validate_json(env[server.SETTINGS_ENV])
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 6001, 3)
    assert (settings.max_in_flight, settings.request_timeout_s) == (7, 2.5)
    assert env["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] == "3"
    assert follower.FOLLOW_ENV not in env and follower.INTERVAL_ENV not in env
    _, env = production.serve_command(cfg, URI)
    assert env[follower.INTERVAL_ENV] == "1.5"
    assert ServingConfig.model_validate_json(env[server.SETTINGS_ENV]).port == 5001


def test_no_follower_without_the_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(follower.FOLLOW_ENV, raising=False)

    class Owner:
        served_version = "unchanged"

    owner = Owner()
    follower.maybe_follow(owner)
    assert owner.served_version == "unchanged"
    assert not follower._started.locked()  # a later start with the variable may still follow
