"""A stop that stops: SIGTERM to `make run` (what kill, timeout and supervisors send)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from pipeline.config import load_config
from pipeline.lifecycle import tracking

from .conftest import store_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


def test_sigterm_to_make_run_stops_every_process_it_started(
    airflow_db: Path, tmp_path: Path
) -> None:
    env = {**os.environ, **store_env(tmp_path), "PIPELINE__STATE_DIR": str(tmp_path / "state")}
    env["AIRFLOW_HOME"] = str(airflow_db)
    make = subprocess.Popen(
        ["make", "-s", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert make.stdout is not None
    lines = []
    for line in make.stdout:  # the retrain is under way: its first task has started
        lines.append(line)
        if "start  ingest" in line:
            break
    started = [p for p in psutil.Process(make.pid).children(recursive=True)]
    assert any("dags" in " ".join(p.cmdline()) for p in started), lines
    make.send_signal(signal.SIGTERM)
    rest = make.stdout.read()
    assert make.wait(timeout=30) != 0
    _gone, alive = psutil.wait_procs(started, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]
    assert "SIGTERM: stopping price_retrain" in rest and "Traceback" not in rest
    time.sleep(3)  # nothing registers after the command returned
    cfg = load_config(environ=env)
    assert tracking.client(cfg).search_registered_models() == []
