import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import Config
from pipeline.orchestration import steps

DAY = dt.date(2013, 3, 1)


def test_the_sequence_is_the_twelve_steps_in_order() -> None:
    assert steps.SEQUENCE == (
        "ingest",
        "validate",
        "monitor",
        "features",
        "tune",
        "best",
        "train",
        "evaluate",
        "register",
        "promote",
        "tidy",
        "forecast",
    )
    assert set(steps.STEPS) == set(steps.SEQUENCE)
    assert all(callable(steps.STEPS[name]) for name in steps.SEQUENCE)
    assert steps.FAN_OUT in steps.SEQUENCE
    # the DAGs' halves come from the same names
    assert set(steps.DAILY_STEPS) | set(steps.DATA_STEPS) | set(steps.MODEL_STEPS) == set(
        steps.SEQUENCE
    )


def test_start_is_json_and_the_day_round_trips() -> None:
    carry = steps.start("GOOG", DAY, "manual__2013-03-01")
    assert carry == {"ticker": "GOOG", "day": "2013-03-01", "pipeline_run_id": "manual__2013-03-01"}
    assert json.loads(json.dumps(carry)) == carry  # travels through XCom
    assert steps.run_day(carry) == DAY


def test_a_slice_runs_in_memory_and_grows_the_carry(cfg: Config) -> None:
    carry = steps.start("GOOG", DAY, "test-slice")
    out = steps.run_steps(cfg, carry, ["ingest", "validate", "features"])
    assert {k: out[k] for k in carry} == carry  # earlier keys kept
    assert Path(out["raw_path"]) == cfg.layout.raw_path("GOOG", DAY)
    assert Path(out["curated_path"]) == cfg.layout.curated_path("GOOG")
    assert out["validation"]["passed"] is True and out["last_date"] == "2013-03-01"
    assert Path(out["features_path"]) == cfg.layout.features_path("GOOG", DAY)
    feats = pd.read_parquet(out["features_path"])
    assert feats["Date"].max() == pd.Timestamp("2013-03-01")
    assert out["splits"]["live"]["rows"] == 1
    assert json.loads(json.dumps(out)) == out  # still JSON: no frames in the carry
    assert carry == steps.start("GOOG", DAY, "test-slice")  # the input carry is not mutated


def test_advance_adds_only_the_steps_keys(cfg: Config) -> None:
    carry = steps.start("GOOG", DAY, "test-advance")
    out = steps.advance(cfg, "ingest", carry)
    assert set(out) - set(carry) == {"raw_path"}


def test_importing_the_sequence_stays_cheap() -> None:
    heavy = ["tensorflow", "keras", "mlflow", "optuna", "great_expectations", "pandas"]
    code = (
        "import sys, json, pipeline.orchestration.steps, pipeline.carry; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_a_failed_step_closes_the_runs_open_mlflow_run(cfg: Config) -> None:
    """A step that fails for good must not leave the day's parent run RUNNING forever."""
    import pytest

    from pipeline import tracking

    parent = tracking.parent_run(cfg, "GOOG", DAY, "run-fails")
    other = tracking.parent_run(cfg, "GOOG", DAY - dt.timedelta(days=1), "run-goes-on")
    carry = {**steps.start("GOOG", DAY, "run-fails"), "parent_run_id": parent}
    with pytest.raises(KeyError, match="features_path"):  # train without its inputs
        steps.run_steps(cfg, carry, ["train"])  # type: ignore[arg-type]
    mc = tracking.client(cfg)
    failed = mc.get_run(parent)
    assert failed.info.status == "FAILED" and failed.data.tags["failed_step"] == "train"
    assert mc.get_run(other).info.status == "RUNNING"  # another run's is not touched
    assert tracking.close_failed_parent(cfg, "GOOG", "run-fails", "train") is None  # closed once


def test_a_rerun_of_a_day_closes_what_an_interrupted_run_left_open(cfg: Config) -> None:
    from pipeline import tracking

    stale = tracking.parent_run(cfg, "GOOG", DAY, "run-killed")  # its process died mid-way
    fresh = tracking.parent_run(cfg, "GOOG", DAY, "run-again")
    mc = tracking.client(cfg)
    closed = mc.get_run(stale)
    assert closed.info.status == "FAILED"
    assert closed.data.tags["interrupted"] == "closed by run-again"
    assert closed.data.tags["superseded_by"] == fresh
    assert mc.get_run(fresh).info.status == "RUNNING"
