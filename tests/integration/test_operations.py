"""Daily forecasts with their realised error, and the human `model_promotion` DAG."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import tracking
from pipeline.carry import Carry
from pipeline.config import Config, throwaway_config
from pipeline.data import ingest, validate
from pipeline.lifecycle import audit, promotion, registry
from pipeline.monitoring import forecast, monitor
from pipeline.orchestration import steps

from .conftest import TINY, store_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ops_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ops")


@pytest.fixture(scope="module")
def ops_cfg(ops_root: Path, prepared: Carry) -> Callable[..., Config]:
    """A store of its own with one tiny network registered twice (v1, v2), v1 in production."""

    def make(**keys: Any) -> Config:
        return throwaway_config(ops_root, TINY, **keys)

    cfg = make()
    seed_day = dt.date(2013, 2, 25)
    steps.run_steps(cfg, steps.start("GOOG", seed_day, "ops-seed"), ["ingest", "validate"])
    trained = steps.run_steps(
        cfg, {**prepared, "pipeline_run_id": "ops"}, ["tune", "best", "train"]
    )
    for _ in range(2):
        registry.register(cfg, "GOOG", trained["model_uri"], trained["parent_run_id"], {})
    promotion.promote(cfg, "GOOG", "1", "ops fixture", "test", force=True)
    return make


def test_forecast_then_next_day_records_realised_error(ops_cfg: Callable[..., Config]) -> None:
    cfg = ops_cfg(monitoring__window_days=1)
    day1, day2 = dt.date(2013, 2, 26), dt.date(2013, 2, 27)
    for day in (day1, day2):
        validate.run(cfg, "GOOG", day, ingest.run(cfg, "GOOG", day)["raw_path"])
        if day == day1:
            written = forecast.run(cfg, "GOOG", day1)["forecast"]
            assert written is not None
            assert written["for_date"] == "2013-02-27" and written["model_version"] == "1"
            assert monitor.run(cfg, "GOOG", day1)["monitoring"]["days"] == 0
    result = monitor.run(cfg, "GOOG", day2)["monitoring"]
    table = forecast.read_forecasts(cfg, "GOOG")
    row = table.iloc[0]
    assert row["actual_close"] == pytest.approx(799.78)  # GOOG close on 2013-02-27
    assert row["model_abs_error"] == pytest.approx(abs(row["forecast_close"] - 799.78))
    assert row["naive_abs_error"] == pytest.approx(abs(row["naive_close"] - 799.78))
    assert result["days"] == 1
    worse = bool(row["model_abs_error"] > row["naive_abs_error"])
    assert result["worse_than_naive"] is worse
    assert registry.is_production_beatable(cfg, "GOOG") is worse
    mc = tracking.client(cfg)
    exp = mc.get_experiment_by_name("price_pipeline_monitoring")
    runs = mc.search_runs([exp.experiment_id], "tags.day = '2013-02-27'")
    assert runs[0].data.metrics["realised_naive_abs_error"] == pytest.approx(row["naive_abs_error"])


def _trigger(conf: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), "dags", "test", "model_promotion", "-c", json.dumps(conf)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_model_promotion_dag_promotes_and_rolls_back(
    ops_cfg: Callable[..., Config], ops_root: Path, airflow_db: Path
) -> None:
    cfg = ops_cfg()
    env = store_env(ops_root)
    refused = _trigger(
        {"action": "promote", "version": "2", "reason": "strict gate", "force": False},
        {**env, "PIPELINE__REGISTRY__NAIVE_MARGIN": "0.5"},
    )
    assert refused.returncode != 0
    assert str(registry.production_version(cfg, "GOOG").version) == "1"
    done = _trigger({"action": "promote", "version": "2", "reason": "ui test", "force": True}, env)
    assert done.returncode == 0, done.stdout[-2000:]
    assert str(registry.production_version(cfg, "GOOG").version) == "2"
    back = _trigger({"action": "rollback", "reason": "ui rollback", "force": True}, env)
    assert back.returncode == 0, back.stdout[-2000:]
    assert str(registry.production_version(cfg, "GOOG").version) == "1"
    trail = [
        e
        for e in audit.audit_trail(cfg, registry.model_name(cfg, "GOOG"))
        if e["action"] != "refused"
    ]
    assert [(e["action"], e["to_version"]) for e in trail][-2:] == [
        ("promote", "2"),
        ("rollback", "1"),
    ]
    assert trail[-1]["actor"].startswith("airflow:") and trail[-1]["reason"] == "ui rollback"
