"""The best forecaster serves: a fresh state whose first LSTM fails the gate still forecasts.

Real Optuna, Keras, MLflow registry and evaluation on a throw-away store: HAR is fitted,
logged as a pyfunc like the LSTM's, evaluated on the same days, registered and gated; the
better of the two serves as a tagged fallback; the day's forecast is written and says which
model made it; a later version that passes the gate takes over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from pipeline import tracking
from pipeline.carry import Carry
from pipeline.config import Config
from pipeline.data import store
from pipeline.layout import version_uri
from pipeline.lifecycle import audit, fallback, registry
from pipeline.monitoring import forecast
from pipeline.operations import daily

from .conftest import DAY, model_half

pytestmark = pytest.mark.slow


def test_a_refused_first_lstm_leaves_the_best_forecaster_serving(
    tiny_cfg: Callable[..., Config], prepared: Carry
) -> None:
    strict = tiny_cfg(registry__naive_margin=0.5)  # MASE < 0.5: neither LSTM nor HAR
    name = registry.model_name(strict, "GOOG")
    out = model_half(strict, prepared, "fallback-1")["promotion"]
    assert out["promoted"] is False and out["reason"].startswith("point rule")
    served = out["fallback"]
    assert served["fallback"] is True and served["version"] == "2"  # HAR, after LSTM v1
    mc = tracking.client(strict)
    har = mc.get_model_version(name, "2")
    assert har.tags["forecaster"] == "har" and har.tags["gate"] == "refused"
    assert mc.get_model_version(name, "1").tags["forecaster"] == "lstm"
    production = registry.production_version(strict, "GOOG")
    assert production is not None and str(production.version) == out["production_version"]
    assert production.tags["fallback"].startswith("fallback: no forecaster passed every rule")
    evidence = json.loads(
        Path(
            tracking.client(strict).download_artifacts(
                har.tags["run_id"], har.tags["evidence_file"]
            )
        ).read_text()
    )
    assert {"vs_best_baseline", "coverage", "gate_reason"} <= set(har.tags)
    # served HAR scores as the HAR baseline does on the same days (fitted on train rows only)
    ratio = evidence["model_interval_score_80"] / evidence["har_interval_score_80"]
    assert 0.95 < ratio < 1.05
    trail = audit.audit_trail(strict, registry.model_name(strict, "GOOG"))
    assert trail[-1]["action"] == "promote" and trail[-1]["reason"].startswith("fallback: ")
    assert [(e["action"], e["to_version"]) for e in trail[:-1]] == [
        ("refused", "1"),
        ("refused", "2"),
    ]
    # HAR's run is the pipeline run's child, dated as it is (retention, monitoring read it);
    # a retried step finds it rather than logging and registering HAR again
    assert registry.version_day(strict, har) == DAY
    assert fallback.har_run(strict, "GOOG", DAY, out["run_id"]) == har.tags["run_id"]
    parent = mc.get_run(out["run_id"]).data.tags["promotion"]
    assert parent.startswith("not promoted; fallback: ")

    # HAR answers as the LSTM does: the same columns, bands around the close
    model = mlflow.pyfunc.load_model(version_uri(name, "2"))
    bars = store.read_adjusted(strict, "GOOG", until=DAY).tail(300)
    answer = model.predict(bars.assign(Date=bars["Date"].dt.strftime("%Y-%m-%d"))).iloc[0]
    assert answer["lower_95"] < answer["lower_80"] < answer["upper_80"] < answer["upper_95"]
    assert answer["as_of"] == "2013-03-01" and answer["model_version"] == "2"

    # the day's forecast is written by production, and the report says which model
    written = forecast.run(strict, "GOOG", DAY)["forecast"]
    assert written is not None and written["model_version"] == out["production_version"]
    label = daily.forecaster(strict, written, {})
    assert label in ("HAR fallback", "LSTM fallback")
    assert label.startswith("HAR") == (out["production_version"] == "2")

    # a later version that passes the gate takes over from the fallback, as any would
    lenient = tiny_cfg(
        registry__point_tolerance=0.99,
        registry__significance=1e-9,
        registry__interval_tolerance=0.99,
        registry__coverage_tolerance=0.79,
    )
    later = model_half(lenient, prepared, "fallback-2")["promotion"]
    assert (
        later["promoted"] is True
        and "is a fallback that did not pass the gate" in (later["reason"])
    )
    assert str(registry.production_version(lenient, "GOOG").version) == later["version"]
    assert "fallback" not in later  # production existed: nothing more was registered
    versions = {str(v.version) for v in mc.search_model_versions(f"name = '{name}'")}
    assert versions == {"1", "2", "3"}
