"""The operators' clumsy edges: each refused or said plainly, none a traceback or silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.config import throwaway_env

ROOT = Path(__file__).parents[2]


def cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=ROOT,
        env={**clean, **throwaway_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_calendar_typo_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    out = cli(tmp_path, "daily", "2013-03-01", PIPELINE__VALIDATION__CALENDAR="XNYSE")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "validation.calendar = 'XNYSE'" in out.stderr and "XNYS" in out.stderr


def test_audit_on_a_store_with_no_trail_says_so(tmp_path: Path) -> None:
    out = cli(tmp_path, "audit", "--ticker", "GOOG")
    assert out.returncode == 1 and out.stdout == ""
    assert "no audit trail for price_lstm_universe in sqlite:///" in out.stderr
    assert "is this the store you meant?" in out.stderr


def test_tensorflows_start_up_lines_stay_off_the_console(tmp_path: Path) -> None:
    """A command of the CLI, then TensorFlow loaded in its process (as `run`, `backtest`
    and the replay load it): none of its C++ start-up lines reach stderr."""
    from pipeline.data.ingest import sample_path

    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['validate', {str(sample_path('GOOG'))!r}]); "
        "import keras; sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "oneDNN custom operations" not in out.stderr
    assert "cpu_feature_guard" not in out.stderr
