"""A stop that stops: SIGTERM to `make run` (what kill, timeout and supervisors send)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipeline import tracking
from pipeline.config import load_config

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


def start_pipeline(env: dict[str, str], *argv: str, **popen: Any) -> subprocess.Popen[str]:
    """`python -m pipeline ARGV` in the background, its output (both streams) piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def run_pipeline(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait_for_start(events: Path, task: str, proc: subprocess.Popen[str], limit_s: float) -> None:
    """Until the journal says `task` started (the run is under way there)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        lines = events.read_text().splitlines() if events.exists() else []
        if any('"event": "start"' in ln and f'"task": "{task}"' in ln for ln in lines):
            return
        time.sleep(0.2)
    raise AssertionError(f"{task} never started")


def _started_after(events: Path, when: float) -> list[str]:
    import json

    seen = [json.loads(ln) for ln in events.read_text().splitlines() if ln.strip()]
    return [e["task"] for e in seen if e["event"] == "start" and e["t"] > when]


@pytest.mark.parametrize(
    ("command", "task", "signum"),
    [
        (["replay", "--from", "2013-01-02", "--to", "2013-01-04"], "tune", signal.SIGTERM),
        (["daily", "2013-01-02"], "train", signal.SIGINT),  # `make run`, Ctrl-C
        (["daily", "2013-01-02"], "evaluate", signal.SIGTERM),  # just before `register`
    ],
    ids=["replay-sigterm-in-tune", "run-ctrl-c-in-train", "run-sigterm-before-register"],
)
def test_a_stop_stops_at_once_and_nothing_starts_or_registers_after_it(
    airflow_db: Path, tmp_path: Path, command: list[str], task: str, signum: int
) -> None:
    """A stop during the retrain is not an Airflow retry: the run ends within seconds,
    no task starts after the signal (no register, no promote), the lock is free."""

    from pipeline.operations import runlock

    state = tmp_path / "state"
    env = {**os.environ, **store_env(tmp_path), "PIPELINE__STATE_DIR": str(state)}
    env["AIRFLOW_HOME"] = str(airflow_db)
    proc = start_pipeline(env, *command)
    events = state / "runs" / "2013-01-02" / "price_retrain.jsonl"
    _wait_for_start(events, task, proc, limit_s=300)
    signalled = time.time()
    proc.send_signal(signum)
    try:
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.time() - signalled
    print(f"{command[0]} stopped {took:.1f} s after {signal.Signals(signum).name}")
    out = proc.stdout.read() if proc.stdout else ""
    assert rc == 128 + signum, out[-3000:]
    assert took < 15, f"{took:.1f} s to stop (aim: 5 s)"  # room for a loaded machine
    time.sleep(3)  # nothing starts, nothing registers, after the command returned
    assert _started_after(events, signalled) == []
    cfg = load_config(environ=env)
    assert tracking.client(cfg).search_registered_models() == []
    assert not (state / "runs" / "2013-01-03").exists()  # no day after the stopped one
    with runlock.hold(cfg, "the next run"):  # the lock went with the run
        pass


def test_what_a_killed_run_left_open_is_closed_and_said(airflow_db: Path, tmp_path: Path) -> None:
    """SIGKILL (no clean-up at all) leaves the retrain's DAG run `running` and its MLflow
    runs RUNNING; `doctor` (as the next run does first) closes them and says so."""

    from mlflow.entities import ViewType

    state = tmp_path / "state"
    env = {**os.environ, **store_env(tmp_path), "PIPELINE__STATE_DIR": str(state)}
    env["AIRFLOW_HOME"] = str(airflow_db)
    run = start_pipeline(env, "daily", "2013-01-02", start_new_session=True)
    _wait_for_start(state / "runs" / "2013-01-02" / "price_retrain.jsonl", "tune", run, 300)
    cfg = load_config(environ=env)
    mc = tracking.client(cfg)

    def running() -> list[object]:
        ids = [e.experiment_id for e in mc.search_experiments(view_type=ViewType.ALL)]
        return list(mc.search_runs(ids, "attributes.status = 'RUNNING'"))

    deadline = time.monotonic() + 120
    while not running() and time.monotonic() < deadline:  # its MLflow run under way
        time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert running()  # left open
    doctor = run_pipeline(env, "doctor")
    assert doctor.returncode == 0, doctor.stderr[-2000:]
    assert "closed: Airflow: price_retrain run" in doctor.stdout, doctor.stdout
    assert "closed: MLflow: run " in doctor.stdout
    assert running() == []
    again = run_pipeline(env, "doctor")
    assert again.stdout.strip().endswith("nothing to close"), again.stdout
