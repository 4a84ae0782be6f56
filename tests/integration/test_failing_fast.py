"""A permanent error fails its task at once, with its reason on the console: a config
made invalid while `make run` is under way ends the run in seconds, not after Airflow's
retries (about 25 minutes of silence before)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .conftest import store_env
from .test_stopping import ROOT, _wait_for_start, start_pipeline

pytestmark = pytest.mark.slow


def test_a_config_broken_mid_run_fails_the_run_at_once_saying_why(
    airflow_db: Path, tmp_path: Path
) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text((ROOT / "pipeline.yaml").read_text())
    state = tmp_path / "state"
    env = {
        **os.environ,
        **store_env(tmp_path),
        "PIPELINE__STATE_DIR": str(state),
        "PIPELINE_CONFIG": str(config),
        "AIRFLOW_HOME": str(airflow_db),
    }
    run = start_pipeline(env, "daily", "2013-01-02")
    _wait_for_start(state / "runs" / "2013-01-02" / "price_retrain.jsonl", "tune", run, 300)
    config.write_text(config.read_text().replace("  n_trials:", "  n_trial:"))  # a typo
    broken = time.monotonic()
    try:
        out, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    took = time.monotonic() - broken
    assert run.returncode == 2, out[-3000:]
    assert "n_trial" in out and "not retried: no retry can fix this" in out, out[-3000:]
    assert took < 120, f"{took:.0f} s after the config broke"  # Airflow's retry: 300 s, then 600
