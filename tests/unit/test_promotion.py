"""Moves of `production` on a real, throw-away MLflow store (each test its own ticker)."""

import datetime as dt

import pytest

from pipeline import tracking
from pipeline.config import Config, throwaway_config
from pipeline.lifecycle import audit, promotion, registry
from pipeline.lifecycle.registry import PromotionRefused
from tests.helpers import register_versions

EVALUATION = {
    "test_days": 320,
    "first_test_date": "2011-11-28",
    "last_test_date": "2013-03-01",
    "model_mae": 6.1,
    "model_rmse": 8.0,
    "model_mase": 0.97,
    "model_directional_accuracy": 0.52,
    "naive_mae": 6.3,
    "naive_rmse": 8.2,
    "naive_mase": 1.0,
    "naive_directional_accuracy": 0.5,
    "dm_stat": -1.2,
    "dm_pvalue": 0.2,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return throwaway_config(tmp_path_factory.mktemp("promotion"), model__scope="ticker")


def test_summary_is_the_contract_line() -> None:
    promo = {
        "model_name": "price_lstm_GOOG",
        "version": "3",
        "promoted": True,
        "reason": "beats naive",
        "production_version": "3",
    }
    assert promotion.summary(promo, EVALUATION, "abc") == {
        "model_name": "price_lstm_GOOG",
        "version": "3",
        "promoted": True,
        "reason": "beats naive",
        "production_version": "3",
        "run_id": "abc",
        "first_test_date": "2011-11-28",
        "last_test_date": "2013-03-01",
        "test_days": 320,
        "model": {"mae": 6.1, "mase": 0.97, "directional_accuracy": 0.52},
        "naive": {"mae": 6.3, "mase": 1.0, "directional_accuracy": 0.5},
    }


def test_summary_adds_interval_keys_when_the_model_has_intervals() -> None:
    promo = {"model_name": "m", "version": "1", "promoted": False, "reason": "r"}
    promo["production_version"] = None
    bands = {
        f"{who}_{key}": value
        for who, value in (("model", 1.0), ("naive", 2.0), ("ewma", 3.0))
        for key in ("coverage_80", "coverage_95", "interval_score_80", "interval_score_95", "crps")
    }
    ev = {**EVALUATION, **bands, "interval_dm_stat": -2.5, "interval_dm_pvalue": 0.01}
    line = promotion.summary(promo, ev, "abc")
    assert promotion.summary(promo, EVALUATION, "abc").items() <= line.items()  # kept as is
    assert line["intervals"]["ewma"]["interval_score_80"] == 3.0
    assert set(line["intervals"]) == {"model", "naive", "ewma"}
    assert (line["interval_dm_stat"], line["interval_dm_pvalue"]) == (-2.5, 0.01)


def test_latest_features_refuses_helpfully_before_any_run(cfg: Config) -> None:
    with pytest.raises(PromotionRefused, match="no features for GOOG") as err:
        promotion.latest_features(cfg, "GOOG")
    assert str(cfg.state) in str(err.value) and "--force" in str(err.value)
    path = cfg.layout.features_path("GOOG", dt.date(2013, 3, 1))
    path.parent.mkdir(parents=True)
    path.touch()
    assert promotion.latest_features(cfg, "GOOG") == path


def test_nothing_in_production(store: Config) -> None:
    assert promotion.previous_production(store, registry.production_version(store, "NONE")) is None
    with pytest.raises(PromotionRefused, match="no earlier production version"):
        promotion.rollback(store, "NONE", "oops", "me")
    with pytest.raises(PromotionRefused, match="has no version 1"):
        promotion.promote(store, "NONE", "1", "manual", "me", force=True)


def test_run_applies_the_gate_and_closes_the_pipeline_run(store: Config) -> None:
    run_id = register_versions(store, "RUN", 1)
    out = promotion.run(store, "RUN", "1", EVALUATION, run_id)
    assert out["promoted"] is True and out["production_version"] == "1"
    assert out["run_id"] == run_id and out["model"]["mase"] == 0.97
    assert tracking.client(store).get_run(run_id).info.status == "FINISHED"


def test_forced_promote_then_rollback_walks_the_audit_trail(store: Config) -> None:
    register_versions(store, "ROLL", 3)
    promotion.promote(store, "ROLL", "1", "first", "me", force=True)
    assert (
        promotion.previous_production(store, registry.production_version(store, "ROLL")) is None
    )  # nothing before v1
    with pytest.raises(PromotionRefused, match="already in production"):
        promotion.promote(store, "ROLL", "1", "again", "me", force=True)
    promotion.promote(store, "ROLL", "3", "skip v2", "me", force=True)
    assert promotion.previous_production(store, registry.production_version(store, "ROLL")) == "1"

    event = promotion.rollback(store, "ROLL", "v3 misbehaves", "ops", force=True)
    assert (event["from_version"], event["to_version"], event["forced"]) == ("3", "1", True)
    prod = registry.production_version(store, "ROLL")
    assert prod is not None and str(prod.version) == "1"
    assert [e["action"] for e in audit.audit_trail(store, registry.model_name(store, "ROLL"))] == [
        "promote",
        "promote",
        "rollback",
    ]
    event = promotion.rollback(store, "ROLL", "to v2", "ops", force=True, to_version="2")
    assert event["to_version"] == "2"


def test_unforced_promote_needs_features_to_re_evaluate(store: Config) -> None:
    register_versions(store, "CHK", 1)
    with pytest.raises(PromotionRefused, match="no features for CHK"):
        promotion.promote(store, "CHK", "1", "manual", "me")
    assert registry.production_version(store, "CHK") is None


def test_a_version_registered_without_all_its_evidence_is_never_promoted(store: Config) -> None:
    """What an interrupted `register` leaves: the version says so, and no one promotes it."""
    register_versions(store, "HALF", 1)
    name = registry.model_name(store, "HALF")
    tracking.client(store).set_model_version_tag(name, "1", registry.EVIDENCE, "incomplete")
    with pytest.raises(PromotionRefused, match="without all its evidence"):
        promotion.promote(store, "HALF", "1", "try", "erin", force=True)
    assert registry.production_version(store, "HALF") is None
