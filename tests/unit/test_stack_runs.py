"""pipeline/deployment/stack_runs.py's pure parts (the rest runs against a real stack in
tests/integration/test_stack.py and bench/scaleout.py)."""

import datetime as dt
import subprocess
import sys

from pipeline.deployment.stack_runs import TaskRun, busy_seconds

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_busy_seconds_counts_overlapping_tasks_once() -> None:
    spans = [(_at(10), _at(20)), (_at(0), _at(5)), (_at(15), _at(30)), (_at(16), _at(18))]
    assert busy_seconds(spans) == 5 + 20  # 0-5 and 10-30; the gaps are Airflow's
    assert busy_seconds([]) == 0


def test_task_run_seconds() -> None:
    done = TaskRun("tune", 0, "success", "worker1@h", 1, _at(0), _at(42.5))
    assert done.seconds == 42.5
    assert TaskRun("tune", 1, None, "", 0, None, None).seconds == 0.0


def test_sigterm_inside_a_throwaway_stack_still_runs_its_teardown() -> None:
    """`kill` on a benchmark holding a stack: the teardown (`stack down`) runs, even when a
    second SIGTERM comes in during it, and the process still ends as interrupted."""
    code = (
        "import os, signal, time\n"
        "from pipeline.deployment.processes import sigterm_unwinds\n"
        "with sigterm_unwinds():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "    finally:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(0.5)\n"
        "        print('torn down', flush=True)\n"
        "print('not reached')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout == "torn down\n", out.stderr
    assert out.returncode != 0 and "KeyboardInterrupt" in out.stderr
