"""One writer per store: two days validated at once both land in the curated table."""

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import throwaway_config, throwaway_env
from pipeline.data import ingest, store, validate

pytestmark = pytest.mark.slow

VALIDATE_DAY = (
    "import datetime as dt, sys\n"
    "from pipeline.data import ingest, validate\n"
    "from pipeline.config import load_config\n"
    "cfg, day = load_config(), dt.date.fromisoformat(sys.argv[1])\n"
    "validate.run(cfg, 'GOOG', day, ingest.run(cfg, 'GOOG', day)['raw_path'])\n"
)


def test_two_days_validated_at_once_lose_no_bar(tmp_path: Path) -> None:
    env = {**throwaway_env(tmp_path), "PIPELINE__TICKERS": "[GOOG]"}
    cfg = throwaway_config(tmp_path, {"PIPELINE__TICKERS": "[GOOG]"})
    first = dt.date(2013, 2, 26)
    validate.run(cfg, "GOOG", first, ingest.run(cfg, "GOOG", first)["raw_path"])
    before = len(store.read_curated(cfg, "GOOG"))
    runs = []
    for day in ("2013-02-28", "2013-02-27"):  # the newer day first, the older right after
        runs.append(
            subprocess.Popen(
                [sys.executable, "-c", VALIDATE_DAY, day],
                env={**os.environ, **env},
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        time.sleep(0.3)
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read() if run.stderr else ""
    curated = store.read_curated(cfg, "GOOG")
    assert curated["Date"].max() == pd.Timestamp("2013-02-28")
    assert len(curated) == before + 2  # both new bars: neither replace dropped the other's
