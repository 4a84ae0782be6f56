"""The promotion gate, and the registry and audit trail on a real, throw-away MLflow store."""

import datetime as dt
import json
import os
import socket
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.config import Config, throwaway_config
from pipeline.lifecycle import audit, evidence, promotion, registry
from pipeline.lifecycle.gate import decide
from pipeline.sections import RegistryConfig
from tests.helpers import register_versions


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """One throw-away MLflow store for the module; each test uses its own ticker."""
    return throwaway_config(tmp_path_factory.mktemp("registry"), model__scope="ticker")


GATE = RegistryConfig()


def gate(**keys: float) -> RegistryConfig:
    return RegistryConfig(**keys)


@pytest.mark.parametrize(
    ("ev", "beatable", "promote", "why"),
    [
        ({"model_mase": 1.01, "model_mae": 6.6}, False, False, "point rule: MASE 1.0100"),
        ({"model_mase": 1.004, "model_mae": 6.5}, False, True, "no production"),  # noise
        ({"model_mase": 0.99, "model_mae": 6.5, "production_mae": 6.4}, False, False, "worse"),
        ({"model_mase": 0.99, "model_mae": 6.5, "production_mae": 6.4}, True, True, "losing"),
        (
            {"model_mase": 0.99, "model_mae": 6.3, "production_mae": 6.4},
            False,
            True,
            "no worse than production",
        ),
    ],
)
def test_gate(ev: dict, beatable: bool, promote: bool, why: str) -> None:
    decision = decide(ev, GATE, production_beatable=beatable)
    assert decision.promote is promote and why in decision.reason


def test_the_point_rule_refuses_a_significantly_worse_forecast_within_the_tolerance() -> None:
    ev = {"model_mase": 1.003, "model_mae": 1.0, "dm_stat": 2.5, "dm_pvalue": 0.01}
    refused = decide(ev, GATE)
    assert not refused.promote
    assert "significantly worse than naive" in refused.reason and "p = 0.01" in refused.reason
    assert decide({**ev, "dm_pvalue": 0.3}, GATE).promote  # worse, but noise
    assert decide({**ev, "dm_stat": -2.5}, GATE).promote  # significantly *better*


def test_gate_margin() -> None:
    assert not decide({"model_mase": 0.99, "model_mae": 1}, gate(naive_margin=0.02)).promote


def test_gate_tolerance_admits_a_slightly_worse_model() -> None:
    ev = {"model_mase": 0.9, "model_mae": 6.5, "production_mae": 6.4}
    assert decide(ev, gate(production_tolerance=0.02)).promote
    assert not decide(ev, gate(production_tolerance=0.01)).promote


def test_model_name(make_cfg) -> None:
    assert registry.model_name(make_cfg(), "GOOG") == "price_lstm_GOOG"
    universe = make_cfg(model__scope="universe")
    assert registry.model_name(universe, "GOOG") == "price_lstm_universe"  # serves them all
    assert registry.model_name(universe, "ACME") == "price_lstm_universe"
    assert registry.model_name(make_cfg(registry__model_prefix="fc"), "MSFT") == "fc_MSFT"


def test_evidence_keeps_scores_and_adds_provenance() -> None:
    evaluation = {
        "model_mae": 6.5,
        "naive_mase": 1.0,
        "production_mae": 6.4,
        "dm_pvalue": 0.03,
        "test_days": 300,
        "production_version": "1",
        "first_test_date": "2012-01-03",
        "last_test_date": "2013-03-01",
    }
    fingerprint, params = {"rows": 2148}, {"units": 4}
    validation = {"passed": True, "checked": 27}
    ev = evidence.collect(evaluation, fingerprint, params, validation)
    assert set(ev) == {
        "model_mae",
        "naive_mase",
        "production_mae",
        "production_version",
        "dm_pvalue",
        "first_test_date",
        "last_test_date",
        "data_fingerprint",
        "validation",
        "params",
        "code_version",
    }
    assert ev["data_fingerprint"] == fingerprint and ev["params"] == params
    assert ev["validation"] == validation and ev["code_version"] == tracking.code_version()
    assert ev["model_mae"] == 6.5 and ev["dm_pvalue"] == 0.03


def test_a_universe_of_hundreds_registers_pooled_tags_only(store: Config) -> None:
    """394 tickers' results travel in the evaluation (a few numbers each) but the version
    gets the pooled figures, a count and where the per-ticker table is: within MLflow's
    limits whatever the universe's size, long values cut with their digest."""
    tickers = [f"T{i:03d}" for i in range(394)]
    scores = {"model_interval_score_80": 1.0, "naive_interval_score_80": 1.1, "test_days": 188}
    evaluation = {
        "model_mae": 1.2,
        "model_mase": 0.99,
        "naive_interval_score_80": 5.1,
        "model_interval_score_80": 1.0,
        "best_baseline": "naive",
        "first_test_date": "2017-05-01",
        "last_test_date": "2018-02-07",
        "tickers": {t: scores for t in tickers},
        "tickers_left_out": {"NEW": "100 sessions before its test days"},
    }
    validation = {"passed": True, "members": tickers * 3}  # a list longer than a tag takes
    ev = evidence.collect(evaluation, {"tickers": ",".join(tickers)}, {"units": 4}, validation)
    assert "tickers" not in ev and not [k for k in ev if "T001" in k]
    assert ev["tickers_scored"] == 394 and ev["tickers_left_out"] == 1
    assert ev["per_ticker"] == "evaluation/per_ticker.csv"
    import mlflow

    from tests.helpers import Constant

    mc = tracking.client(store)
    run_id = tracking.parent_run(store, "WIDE", dt.date(2018, 2, 7), "test-wide")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[])
    version = registry.register(store, "WIDE", info.model_uri, run_id, ev)
    tags = mc.get_model_version(registry.model_name(store, "WIDE"), version).tags
    # a glance on the version (the registry page reads it), the whole evidence in the run
    assert len(tags) <= 20 and tags["tickers_scored"] == "394" and "validation" not in tags
    assert tags["vs_best_baseline"] == "0.196 x NAIVE's 80 % interval score"
    whole = json.loads(Path(mc.download_artifacts(run_id, tags["evidence_file"])).read_text())
    assert whole["validation"]["members"] == tickers * 3  # nothing cut
    assert whole["naive_interval_score_80"] == 5.1 and whole["model_mae"] == 1.2


def test_metrics_params_and_tags_of_any_number_go_in_batches_mlflow_takes(store: Config) -> None:
    mc = tracking.client(store)
    run_id = mc.create_run(tracking.experiment_id(store)).info.run_id
    tracking.log_metrics(mc, run_id, {f"m{i}": float(i) for i in range(2500)})
    tags = {f"t{i}": i for i in range(250)} | {"long": "x" * 20_000}
    tracking.log_batch(mc, run_id, params={f"p{i}": i for i in range(150)}, tags=tags)
    data = mc.get_run(run_id).data
    assert len(data.metrics) == 2500 and data.metrics["m2499"] == 2499.0
    assert len(data.params) == 150 and data.tags["t249"] == "249"
    assert len(data.tags["long"]) <= tracking.TAG_CHARS and "20000 characters" in data.tags["long"]


BEATS_NAIVE = {"model_mase": 0.9, "model_mae": 1.0}
GOOD_BANDS = {
    "model_interval_score_80": 9.0,
    "naive_interval_score_80": 10.0,
    "ewma_interval_score_80": 9.8,
    "har_interval_score_80": 9.5,
    "garch_interval_score_80": 9.6,
}


@pytest.mark.parametrize(
    ("bands", "promoted", "said"),
    [
        ({}, True, "no production model yet"),  # a version without intervals: point rule only
        (
            {**GOOD_BANDS, "model_coverage_80": 0.78},
            True,
            "80 % interval score 9.0000 <= the best baseline's, HAR (9.5000)",
        ),
        (
            {**GOOD_BANDS, "model_interval_score_80": 9.55, "model_coverage_80": 0.8},
            False,
            "interval rule: 80 % interval score 9.5500 is worse than the best baseline's, "
            "HAR (9.5000)",
        ),
        (
            {**GOOD_BANDS, "model_coverage_80": 0.70},
            False,
            "80 % interval coverage 70.0% is more than 5% from nominal 80 %",
        ),
        ({**GOOD_BANDS, "model_coverage_80": 0.90}, False, "not calibrated"),
    ],
)
def test_the_gate_judges_intervals_against_the_best_baseline(
    bands: dict[str, float], promoted: bool, said: str
) -> None:
    decision = decide({**BEATS_NAIVE, **bands}, GATE)
    assert decision.promote is promoted and said in decision.reason
    # the point rule still comes first, whatever the intervals
    losing = decide({**bands, "model_mase": 1.1, "model_mae": 1.0}, GATE)
    assert not losing.promote and "point rule" in losing.reason


def test_the_interval_tolerance_admits_a_model_a_hair_behind_the_best_baseline() -> None:
    ev = {**BEATS_NAIVE, **GOOD_BANDS, "model_interval_score_80": 9.55, "model_coverage_80": 0.8}
    assert decide(ev, gate(interval_tolerance=0.01)).promote
    garch_best = {**ev, "garch_interval_score_80": 9.4}
    refused = decide(garch_best, GATE)
    assert not refused.promote and "GJR-GARCH-t (9.4000)" in refused.reason


def test_record_and_audit_trail_round_trip(store: Config) -> None:
    name = registry.model_name(store, "AUD")
    assert audit.audit_trail(store, registry.model_name(store, "AUD")) == []
    events = [
        {"action": "promote", "model": name, "to_version": "1", "reason": "first", "actor": "a"},
        {
            "action": "rollback",
            "model": name,
            "from_version": "2",
            "to_version": "1",
            "reason": "bad",
            "actor": "b",
            "forced": True,
            "run_id": None,  # None values are left out
        },
    ]
    for event in events:
        audit.record(store, event)
        time.sleep(0.002)  # distinct start times: the trail is ordered by them
    audit.record(store, {"action": "promote", "model": "someone_else", "to_version": "9"})
    trail = audit.audit_trail(store, registry.model_name(store, "AUD"))
    assert [{k: v for k, v in e.items() if k != "at"} for e in trail] == [
        {
            "action": "promote",
            "model": name,
            "to_version": "1",
            "reason": "first",
            "actor": "a",
            "state": "done",
        },
        {
            "action": "rollback",
            "model": name,
            "from_version": "2",
            "to_version": "1",
            "reason": "bad",
            "actor": "b",
            "forced": "true",
            "state": "done",
        },
    ]
    assert all(dt.datetime.fromisoformat(e["at"]).tzinfo is not None for e in trail)


def test_move_production_points_the_alias_and_audits(store: Config) -> None:
    register_versions(store, "MOV", 2)
    assert registry.production_version(store, "MOV") is None
    registry.move_production(store, "MOV", "1", "promote", "first", "me")
    event = registry.move_production(store, "MOV", "2", "promote", "second", "me", forced=True)
    prod = registry.production_version(store, "MOV")
    assert prod is not None and str(prod.version) == "2"
    assert prod.tags["promoted_reason"] == "second"
    assert event["from_version"] == "1" and event["to_version"] == "2" and event["forced"]
    trail = audit.audit_trail(store, registry.model_name(store, "MOV"))
    assert [e["to_version"] for e in trail] == ["1", "2"]
    # the claimed actor and who really ran it, side by side
    assert trail[1]["actor"] == "me" and trail[1]["os_user"].endswith(f"(uid {os.geteuid()})")
    assert trail[1]["host"] == socket.gethostname() and "airflow_run" not in trail[1]


class Interrupted(BaseException):
    """What a SIGINT/SIGTERM raises in the middle of a move (not an Exception)."""


def interrupted_move(ticker: str, step: str, store: Config) -> None:
    """v1 in production, then a move to v2 interrupted at the MLflow call `step`."""
    register_versions(store, ticker, 2)
    registry.move_production(store, ticker, "1", "promote", "first", "me")

    real = getattr(MlflowClient, step)

    def stop(self: MlflowClient, *args: object, **kw: object) -> None:
        if registry.WAS_PRODUCTION in args:  # the mark, set before the alias moves
            return real(self, *args, **kw)  # type: ignore[no-any-return]
        raise Interrupted(step)

    with pytest.MonkeyPatch.context() as m, pytest.raises(Interrupted):
        m.setattr(MlflowClient, step, stop)
        registry.move_production(store, ticker, "2", "promote", "second", "me")


def test_a_move_interrupted_before_the_alias_leaves_production_and_a_pending_record(
    store: Config,
) -> None:
    interrupted_move("HALF", "set_registered_model_alias", store)
    prod = registry.production_version(store, "HALF")
    assert prod is not None and str(prod.version) == "1"  # production did not move
    assert [
        (e["to_version"], e["state"])
        for e in audit.audit_trail(store, registry.model_name(store, "HALF"))
    ] == [
        ("1", "done"),
        ("2", "pending"),  # attempted, and the trail says so
    ]
    assert (
        promotion.previous_production(store, registry.production_version(store, "HALF")) is None
    )  # v1 came from nothing

    registry.move_production(store, "HALF", "2", "promote", "again", "me")  # settles, moves
    assert [
        (e["to_version"], e["state"])
        for e in audit.audit_trail(store, registry.model_name(store, "HALF"))
    ] == [
        ("1", "done"),
        ("2", "not applied"),
        ("2", "done"),
    ]
    assert promotion.rollback(store, "HALF", "back", "ops", force=True)["to_version"] == "1"


def test_a_move_interrupted_after_the_alias_is_settled_as_done(store: Config) -> None:
    interrupted_move("MOVED", "set_model_version_tag", store)  # the step after the alias
    prod = registry.production_version(store, "MOVED")
    assert prod is not None and str(prod.version) == "2"
    assert audit.audit_trail(store, registry.model_name(store, "MOVED"))[-1]["state"] == "pending"
    # production moved with its record: a rollback finds where it came from
    assert promotion.previous_production(store, registry.production_version(store, "MOVED")) == "1"
    audit.settle(
        store, registry.model_name(store, "MOVED"), registry.production_version(store, "MOVED")
    )
    assert audit.audit_trail(store, registry.model_name(store, "MOVED"))[-1]["state"] == "done"
    assert promotion.rollback(store, "MOVED", "back", "ops", force=True)["to_version"] == "1"


def test_the_audit_trail_reads_past_one_page(
    store: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = registry.model_name(store, "PAGES")
    for i in range(3):
        audit.record(store, {"action": "promote", "model": name, "to_version": str(i)})
        time.sleep(0.002)
    search = MlflowClient.search_runs
    monkeypatch.setattr(  # pages of two: a long trail is read to its end
        MlflowClient,
        "search_runs",
        lambda self, *a, **kw: search(self, *a, **{**kw, "max_results": 2}),
    )
    assert [
        e["to_version"] for e in audit.audit_trail(store, registry.model_name(store, "PAGES"))
    ] == ["0", "1", "2"]


def test_identity_names_the_airflow_run_and_ignores_user_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "price_pipeline")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2013-03-01")
    who = audit.identity()
    assert "someone-else" not in str(who["os_user"])
    assert who["airflow_run"] == "price_pipeline/manual__2013-03-01"


def test_a_new_production_model_clears_the_beatable_flag(store: Config) -> None:
    register_versions(store, "BEAT", 1)
    name = registry.model_name(store, "BEAT")
    tracking.client(store).set_registered_model_tag(name, registry.BEATABLE_TAG, "true")
    assert registry.is_production_beatable(store, "BEAT")
    registry.move_production(store, "BEAT", "1", "promote", "fresh start", "me")
    assert not registry.is_production_beatable(store, "BEAT")
    assert not registry.is_production_beatable(store, "NOSUCH")


def test_promote_if_better_promotes_then_refuses_a_worse_model(store: Config) -> None:
    run_id = register_versions(store, "GATE", 2)
    good = {"model_mase": 0.9, "model_mae": 6.0}
    out = registry.promote_if_better(store, "GATE", "1", good, run_id)
    assert out == {
        "model_name": "price_lstm_GATE",
        "version": "1",
        "promoted": True,
        "reason": out["reason"],
        "production_version": "1",
    }
    assert "no production model yet" in out["reason"]
    worse = {"model_mase": 0.95, "model_mae": 6.5, "production_mae": 6.0}
    out = registry.promote_if_better(
        store, "GATE", "2", {**worse, "production_version": "1"}, run_id
    )
    assert out["promoted"] is False and out["production_version"] == "1"
    assert "worse than production v1" in out["reason"]
    mc = tracking.client(store)
    refused = mc.get_model_version("price_lstm_GATE", "2")
    assert refused.tags["gate"] == "refused" and refused.tags["gate_reason"] == out["reason"]
    assert mc.get_run(run_id).data.tags["promotion"].startswith("not promoted: ")
    assert [e["action"] for e in audit.audit_trail(store, registry.model_name(store, "GATE"))] == [
        "promote",
        "refused",
    ]


def test_a_pooled_model_is_refused_when_it_loses_to_naive_on_one_ticker() -> None:
    pooled = {**BEATS_NAIVE, **GOOD_BANDS, "model_coverage_80": 0.8}
    tickers = {
        "AAPL": {"model_interval_score_80": 7.0, "naive_interval_score_80": 7.5},
        "IBM": {"model_interval_score_80": 5.2, "naive_interval_score_80": 5.0},
    }
    refused = decide({**pooled, "tickers": tickers}, GATE)
    assert not refused.promote
    assert refused.reason.startswith("ticker rule: on IBM the 80 % interval score 5.2000")
    assert decide({**pooled, "tickers": tickers}, gate(ticker_tolerance=0.05)).promote
    many = {
        f"T{i:03d}": {"model_interval_score_80": 5.2 + i / 100, "naive_interval_score_80": 5.0}
        for i in range(9)
    }
    reason = decide({**pooled, "tickers": {**tickers, **many}}, GATE).reason
    assert reason.startswith("ticker rule: on T008 the 80 % interval score 5.2800")  # worst
    assert "; 9 more of the 11 tickers too (T007, T006, T005, T004, T003, ...)" in reason


def test_each_ticker_flags_the_universe_model_on_its_own(tmp_path) -> None:
    """One ticker's monitor cannot clear another's alarm on the model they share, and one
    stock's alarm does not make the universe model beatable: the day's report decides
    that across the stocks (operations/alarms.py, tests/unit/test_alarms.py)."""
    cfg = throwaway_config(tmp_path, model__scope="universe")
    mc = tracking.client(cfg)
    mc.create_registered_model("price_lstm_universe")
    mc.set_registered_model_tag("price_lstm_universe", registry.beatable_tag(cfg, "IBM"), "true")
    assert registry.is_production_beatable(cfg, "IBM")
    assert not registry.is_production_beatable(cfg, "GOOG")
    assert not registry.is_production_beatable(cfg, "universe")  # what the gate asks
    mc.set_registered_model_tag(
        "price_lstm_universe", registry.beatable_tag(cfg, "universe"), "true"
    )
    assert registry.is_production_beatable(cfg, "universe")


def test_old_unpromoted_versions_are_deleted_with_their_artifacts(store: Config) -> None:
    """Production, the previous production (audited) and the candidate stay whatever
    their age; a never-promoted version older than keep_unpromoted_days goes, files too."""
    from pipeline.lifecycle import retention

    mc = tracking.client(store)
    name = registry.model_name(store, "TIDY")
    mc.create_registered_model(name)
    exp = tracking.experiment_id(store, store.tracking.experiment)
    days = ("2013-01-02", "2013-01-03", "2013-02-25", "2013-03-01")
    for i, day in enumerate(days):
        run_id = tracking.parent_run(store, "TIDY", dt.date.fromisoformat(day), f"tidy-{i}")
        model = mc.create_logged_model(exp, name=f"m{i}", source_run_id=run_id)
        where = retention.local_path(model.artifact_location)
        assert where is not None
        where.mkdir(parents=True, exist_ok=True)
        (where / "network.keras").write_bytes(b"x" * 1000)
        mc.create_model_version(name, f"models:/{model.model_id}", run_id, model_id=model.model_id)
    registry.move_production(store, "TIDY", "1", "promote", "first", "test")
    refusal = {"action": "refused", "model": name, "to_version": "2", "reason": "gate"}
    audit.record(store, refusal)  # never promoted: the refusal stays in the trail, not v2
    registry.move_production(store, "TIDY", "3", "promote", "better", "test")
    mc.set_registered_model_alias(name, registry.CANDIDATE, "4")
    v2 = mc.get_model_version(name, "2")
    model_id = retention.logged_model_id(v2)
    assert model_id is not None
    v2_files = retention.local_path(mc.get_logged_model(model_id).artifact_location)

    kept_all = retention.tidy(
        store.model_copy(
            update={"registry": store.registry.model_copy(update={"keep_unpromoted_days": None})}
        ),
        "TIDY",
        dt.date(2013, 3, 1),
    )
    assert kept_all == {"deleted": [], "freed_bytes": 0}
    out = retention.tidy(store, "TIDY", dt.date(2013, 3, 1))
    assert out == {"deleted": ["2"], "freed_bytes": 1000}
    left = sorted(str(v.version) for v in mc.search_model_versions(f"name = '{name}'"))
    assert left == ["1", "3", "4"] and v2_files is not None and not v2_files.exists()
    assert mc.get_run(v2.run_id).info.lifecycle_stage == "active"  # its metrics stay
    assert [
        e["to_version"] for e in audit.audit_trail(store, registry.model_name(store, "TIDY"))
    ] == ["1", "2", "3"]
    # what is left is production, audited or the candidate: it stays, however old
    assert retention.tidy(store, "TIDY", dt.date(2014, 3, 1))["deleted"] == []


def test_retention_keeps_every_rollback_target_after_the_experiment_is_renamed(
    store: Config,
) -> None:
    """What was ever production is marked on the version itself: a retention under a
    renamed `tracking.experiment` (its `_audit` experiment new and empty) deletes none of
    it, and the trail, where the model says it is kept, still names the rollback target."""
    from pipeline.lifecycle import retention

    mc = tracking.client(store)
    name = registry.model_name(store, "RENAME")
    mc.create_registered_model(name)
    exp = tracking.experiment_id(store, store.tracking.experiment)
    for i in range(3):  # all of them old
        run_id = tracking.parent_run(store, "RENAME", dt.date(2013, 1, 2 + i), f"rename-{i}")
        model = mc.create_logged_model(exp, name=f"r{i}", source_run_id=run_id)
        mc.create_model_version(name, f"models:/{model.model_id}", run_id, model_id=model.model_id)
    registry.move_production(store, "RENAME", "1", "promote", "first", "test")
    registry.move_production(store, "RENAME", "2", "promote", "better", "test")
    renamed = store.model_copy(
        update={"tracking": store.tracking.model_copy(update={"experiment": "renamed"})}
    )
    assert mc.get_experiment_by_name("renamed_audit") is None
    out = retention.tidy(renamed, "RENAME", dt.date(2014, 3, 1))
    assert out["deleted"] == ["3"]  # never production: it goes
    left = {str(v.version): v.tags for v in mc.search_model_versions(f"name = '{name}'")}
    assert set(left) == {"1", "2"} and all(registry.WAS_PRODUCTION in t for t in left.values())
    assert (
        promotion.previous_production(renamed, registry.production_version(renamed, "RENAME"))
        == "1"
    )


def test_a_run_for_an_older_day_never_replaces_newer_production(store: Config) -> None:
    run_id = register_versions(store, "OLD", 2)
    mc = tracking.client(store)
    newer = {"model_mase": 0.9, "model_mae": 6.0, "last_test_date": "2013-03-01"}
    assert registry.promote_if_better(store, "OLD", "1", newer, run_id)["promoted"]
    mc.set_model_version_tag("price_lstm_OLD", "1", "last_test_date", "2013-03-01")
    backfill = {"model_mase": 0.5, "model_mae": 1.0, "last_test_date": "2012-12-24"}
    out = registry.promote_if_better(store, "OLD", "2", backfill, run_id)
    assert out["promoted"] is False and out["production_version"] == "1"
    assert out["reason"].startswith("data rule: its data end on 2012-12-24")
    same_day = {**backfill, "last_test_date": "2013-03-01"}  # a re-run of production's day
    assert registry.promote_if_better(store, "OLD", "2", same_day, run_id)["promoted"]


def test_a_retried_register_finishes_the_version_its_interrupted_try_left(store: Config) -> None:
    """An interrupted `register` leaves a version marked incomplete; the task's retry
    completes that one instead of registering a second from the same model."""
    import mlflow

    run_id = register_versions(store, "RETRY", 1)
    register_versions(store, "OTHER", 1)  # another model
    mc = tracking.client(store)
    name = registry.model_name(store, "RETRY")
    uri = mc.get_model_version(name, "1").source
    left = {"run_id": run_id, registry.EVIDENCE: "incomplete"}  # what the first try left
    assert str(mlflow.register_model(uri, name, tags=left).version) == "2"
    again = registry.register(store, "RETRY", uri, run_id, {"model_mase": 0.99})
    assert again == "2"
    v2 = mc.get_model_version(name, "2")
    assert v2.tags[registry.EVIDENCE] == "complete" and v2.tags["model_mase"] == "0.99"
    assert str(mc.get_model_version_by_alias(name, registry.CANDIDATE).version) == "2"
    assert len(mc.search_model_versions(f"name = '{name}'")) == 2  # no third
    # the DAG run cleared and run again: a new model under the same run is a new version,
    # and the old model's version, left incomplete, does not take the new one's evidence
    assert str(mlflow.register_model(uri, name, tags=left).version) == "3"
    retrained = mc.get_model_version(registry.model_name(store, "OTHER"), "1").source
    assert registry.register(store, "RETRY", retrained, run_id, {"model_mase": 0.5}) == "4"
    assert mc.get_model_version(name, "3").tags[registry.EVIDENCE] == "incomplete"


def test_a_promotion_racing_a_retention_waits_and_is_refused_cleanly(
    store: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retention deleting an old version while someone promotes it: the promotion waits
    for the registry's lock, then is refused with a reason; production is never pointed at
    a deleted version (nor deleted with it)."""
    import threading

    from pipeline.lifecycle import retention

    register_versions(store, "RACE", 3)  # all from 2013-03-01: old by 2014
    registry.move_production(store, "RACE", "1", "promote", "first", "test")
    real = retention.delete_version
    deleting = threading.Event()

    def slow_delete(cfg: Config, version: object, shared: set[str]) -> int:
        deleting.set()
        time.sleep(1.0)  # the window a promotion raced into
        return real(cfg, version, shared)

    monkeypatch.setattr(retention, "delete_version", slow_delete)
    tidied: dict[str, object] = {}
    tidy = threading.Thread(
        target=lambda: tidied.update(retention.tidy(store, "RACE", dt.date(2014, 3, 1)))
    )
    tidy.start()
    assert deleting.wait(30)
    with pytest.raises(registry.PromotionRefused, match="has no version 2"):
        registry.move_production(store, "RACE", "2", "promote", "racing", "ops")
    tidy.join(30)
    assert tidied["deleted"] == ["2", "3"]
    production = registry.production_version(store, "RACE")
    assert production is not None and str(production.version) == "1"


def test_the_same_model_again_does_not_replace_production() -> None:
    """Its figures are production's own on the same days: equal, not merely within the
    four digits a reason shows; a model better by less than those digits still moves it."""
    same = {"model_mase": 0.9, "model_mae": 6.4, "production_mae": 6.4, "production_version": "3"}
    same |= {"model_interval_score_80": 5.0, "production_interval_score_80": 5.0}
    refused = decide(same, gate())
    assert not refused.promote and "no better than production v3" in refused.reason
    sharper = {**same, "model_interval_score_80": 4.99999}  # below the shown digits
    assert decide(sharper, gate()).promote
    assert decide({**same, "model_mae": 6.39999}, gate()).promote
