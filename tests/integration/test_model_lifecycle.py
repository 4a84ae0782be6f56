"""tune -> train -> evaluate -> register -> promote / rollback on a throw-away MLflow store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pandas as pd
import pytest

from pipeline import tracking
from pipeline.carry import Carry
from pipeline.config import Config
from pipeline.data import store
from pipeline.forecasting.request import BadInput
from pipeline.layout import alias_uri
from pipeline.lifecycle import audit, promotion, registry
from pipeline.lifecycle.registry import PromotionRefused
from pipeline.orchestration import steps

from .conftest import model_half

pytestmark = pytest.mark.slow


def _tune(cfg: Config, prepared: Carry, day: str, run_id: str) -> Carry:
    carry: Carry = {**prepared, "day": day, "pipeline_run_id": run_id}
    return steps.run_steps(cfg, carry, ["tune", "best"])


def test_interrupted_study_resumes_with_its_trials(
    tiny_cfg: Callable[..., Config], prepared: Carry
) -> None:
    first = _tune(tiny_cfg(tune__n_trials=1), prepared, "2013-02-01", "run-a")
    assert first["trials"] == 1
    # the retried task: same pipeline run, same study
    again = _tune(tiny_cfg(tune__n_trials=3), prepared, "2013-02-01", "run-a")
    assert again["trials"] == 3 and again["parent_run_id"] == first["parent_run_id"]
    study = optuna.load_study(study_name="GOOG-2013-02-01", storage=tiny_cfg().optuna_storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    children = tracking.client(tiny_cfg()).search_runs(
        [tracking.experiment_id(tiny_cfg())],
        f"tags.mlflow.parentRunId = '{first['parent_run_id']}'",
    )
    assert len(children) == 3
    assert {c.data.tags["trial_state"] for c in children} <= {"COMPLETE", "PRUNED"}
    assert all("val_loss" in c.data.metrics and "units" in c.data.params for c in children)


def _cycle(cfg: Config, prepared: Carry, run_id: str) -> dict[str, Any]:
    return model_half(cfg, prepared, run_id)["promotion"]


def test_gate_promotion_rollback_and_served_model(
    tiny_cfg: Callable[..., Config], prepared: Carry
) -> None:
    # demands MASE < 0.5: no model gets that; and no fallback (test_fallback.py has it)
    strict = tiny_cfg(registry__naive_margin=0.5, registry__serve_fallback=False)
    name = registry.model_name(strict, "GOOG")

    # 1. worse than the bar: registered as candidate, not promoted, production unchanged
    first = _cycle(strict, prepared, "run-1")
    assert first["promoted"] is False and first["reason"].startswith("point rule: MASE")
    assert registry.production_version(strict, "GOOG") is None
    mc = tracking.client(strict)
    v1 = mc.get_model_version_by_alias(name, "candidate")
    assert str(v1.version) == first["version"] == "1"
    tags = v1.tags  # a glance; the whole evidence is the run's
    assert {"model_mase", "vs_best_baseline", "coverage", "code_version", "gate_reason"} <= set(
        tags
    )
    whole = json.loads(
        Path(mc.download_artifacts(first["run_id"], tags["evidence_file"])).read_text()
    )
    assert {"naive_mae", "data_fingerprint", "validation"} <= set(whole)
    run = mc.get_run(first["run_id"])
    assert "test_model_mae" in run.data.metrics and "test_naive_mae" in run.data.metrics
    assert run.data.tags["data.rows"] == "2148" and "validation.checked" in run.data.tags
    artifacts = {a.path for a in mc.list_artifacts(first["run_id"], "plots")}
    assert {"plots/test_forecasts.png", "plots/optuna_history.png"} <= artifacts

    # 2. a person promotes v1 over the gate's head, with --force: recorded
    with pytest.raises(PromotionRefused, match="point rule"):
        promotion.promote(strict, "GOOG", "1", "try", "alice")
    promotion.promote(strict, "GOOG", "1", "bootstrap", "alice", force=True)
    assert str(registry.production_version(strict, "GOOG").version) == "1"

    # 3. the next run is compared with production on the same days; refused, production stays
    second = _cycle(strict, prepared, "run-2")
    assert second["promoted"] is False and second["version"] == "2"
    v2_tags = mc.get_model_version(name, "2").tags
    assert "production_mae" in v2_tags and v2_tags["production_version"] == "1"
    assert str(registry.production_version(strict, "GOOG").version) == "1"

    # 4. promote v2 by hand, roll back: v1 again, and the trail says so
    promotion.promote(strict, "GOOG", "2", "manual", "bob", force=True)
    with pytest.raises(PromotionRefused, match="v1"):
        promotion.rollback(strict, "GOOG", "v2 misbehaves", "carol")  # gate still applies
    done = promotion.rollback(strict, "GOOG", "v2 misbehaves", "carol", force=True)
    assert done["from_version"] == "2" and done["to_version"] == "1"
    assert str(registry.production_version(strict, "GOOG").version) == "1"
    trail = audit.audit_trail(strict, registry.model_name(strict, "GOOG"))
    moves = [
        (e["action"], e.get("from_version"), e["to_version"], e["actor"])
        for e in trail
        if e["action"] != "refused"
    ]
    assert moves == [
        ("promote", None, "1", "alice"),
        ("promote", "1", "2", "bob"),
        ("rollback", "2", "1", "carol"),
    ]
    assert sum(e["action"] == "refused" for e in trail) == 2

    # 5. the production pyfunc forecasts from raw rows and refuses bad ones
    model = mlflow.pyfunc.load_model(alias_uri(name, "production"))
    bars = store.read_curated(strict, "GOOG").tail(40)
    rows = bars.assign(Date=bars["Date"].dt.strftime("%Y-%m-%d"))
    out = model.predict(rows)
    assert out["as_of"].iloc[0] == "2013-03-01" and out["for_date"].iloc[0] == "2013-03-04"
    assert 0.8 < out["forecast_close"].iloc[0] / out["last_close"].iloc[0] < 1.2
    inner = model.unwrap_python_model().forecast_all(bars)
    assert inner["forecast_close"].iloc[-1] == pytest.approx(
        out["forecast_close"].iloc[0], rel=1e-5
    )
    with pytest.raises(BadInput, match="needs at least"):
        model.predict(rows.tail(3))
    with pytest.raises(BadInput, match="increasing order"):
        model.predict(rows.iloc[::-1])
    nan = rows.astype({"Close": float}).copy()
    nan.loc[nan.index[-1], "Close"] = float("nan")
    with pytest.raises(BadInput, match="Close must be a number"):
        model.predict(nan)

    # 6. a version whose files are gone cannot become production, forced or not
    from pipeline.lifecycle import retention

    v2 = mc.get_model_version(name, "2")
    files = retention.local_path(
        mc.get_logged_model(retention.logged_model_id(v2)).artifact_location
    )
    assert files is not None and files.is_dir()
    files.rename(files.with_name("moved-away"))
    with pytest.raises(PromotionRefused, match="v2 cannot be loaded"):
        promotion.promote(strict, "GOOG", "2", "try", "dave", force=True)
    assert str(registry.production_version(strict, "GOOG").version) == "1"


def test_cli_run_prints_the_summary_contract(
    lifecycle_root: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from pipeline.cli import main
    from pipeline.data.ingest import sample_path

    from .conftest import store_env

    csv = lifecycle_root / "acme.csv"
    pd.read_csv(sample_path()).to_csv(csv, index=False)
    for key, value in store_env(lifecycle_root).items():
        monkeypatch.setenv(key, value)
    assert main(["run", "--csv", str(csv), "--ticker", "ACME"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model_name"] == "price_lstm_ACME" and summary["version"] == "1"
    assert isinstance(summary["promoted"], bool) and summary["reason"]
    assert summary["naive"]["mase"] == 1.0 and summary["last_test_date"] == "2013-03-01"
    assert set(summary["model"]) == {"mae", "mase", "directional_accuracy"}
    # the interval keys beside the point ones
    assert set(summary["intervals"]) == {"model", "naive", "ewma", "har", "garch"}
    for scores in summary["intervals"].values():
        assert 0 <= scores["coverage_80"] <= scores["coverage_95"] <= 1
        assert scores["interval_score_80"] > 0 and scores["interval_score_95"] > 0
        assert 0 <= scores["kupiec_pvalue_80"] <= 1 and 0 <= scores["christoffersen_pvalue_95"] <= 1
        assert scores["qlike"] > 0
    assert 0 <= summary["interval_dm_pvalue"] <= 1
    assert set(summary["interval_dm"]) == {"ewma", "har", "garch"}
    assert summary["best_baseline"] in {"naive", "ewma", "har", "garch"}
    assert Path(summary["work_dir"]).is_dir()
