"""The daily DAG's cost per ticker: 4, 16 and 64 tickers after one retrain.

    .venv/bin/python -m bench.daily_scale [--sizes 4 16 64] [--day 2013-03-01]

Throw-away stores and Airflow home. The embedded four tickers are replicated under other
names (AAPL, AAPLB, AAPLC, ... : the same bars, so the same work per ticker), the universe
model is trained once on the four (a small budget: the daily DAG's cost is measured, not
training's), then the daily DAG runs for the day with 4, 16 and 64 tickers, one after the
other in one process (`dag.test()`, as the replay runs it), and once more for the four as
`make run` runs it (`airflow dags test`, Airflow's start-up included). Prints one JSON
object: wall seconds per size, and the slope in seconds per extra ticker.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import load_config, throwaway_env
from pipeline.data import ingest
from pipeline.orchestration import airflow_run
from pipeline.orchestration.steps import DAILY, RETRAIN

BASE = ("AAPL", "GOOG", "IBM", "MSFT")
BUDGET = {
    "PIPELINE__TUNE__N_TRIALS": "2",
    "PIPELINE__TUNE__MAX_EPOCHS": "2",
    "PIPELINE__TUNE__SPACE__UNITS": "[8]",
    "PIPELINE__TUNE__SPACE__WINDOW": "[20]",
}


def names(n: int) -> list[str]:
    """n tickers: the four, then the four with a letter appended (B, C, ...)."""
    out = list(BASE)
    for letter in string.ascii_uppercase[1:]:
        out += [f"{b}{letter}" for b in BASE]
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[4, 16, 64])
    ap.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2013, 3, 1))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="daily_scale-"))
    landing = root / "landing"
    landing.mkdir()
    for name in names(max(args.sizes)):
        base = next(b for b in BASE if name.startswith(b))
        (landing / f"{name}.csv").write_bytes(ingest.sample_path(base).read_bytes())
    home = root / "airflow"
    home.mkdir()
    env = {
        **throwaway_env(root),
        **BUDGET,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_run.DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PIPELINE__SOURCE__KIND": "csv",
        "PIPELINE__SOURCE__CSV_DIR": str(landing),
        "PIPELINE__TICKERS": json.dumps(list(BASE)),
    }
    os.environ.update(env)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    cfg = load_config()
    reasons = {t: ["no_production"] for t in BASE}
    conf = {"day": args.day.isoformat(), "mode": "tune", "reasons": reasons}
    assert airflow_run.in_process(cfg, RETRAIN, args.day, conf) == 0, "the retrain failed"
    assert airflow_run.in_process(cfg, DAILY, args.day) == 0, (
        "warm-up run failed"
    )  # imports, caches
    runs = {}
    for n in args.sizes:
        os.environ["PIPELINE__TICKERS"] = json.dumps(names(n))
        start = time.perf_counter()
        rc = airflow_run.in_process(load_config(), DAILY, args.day)
        runs[n] = {"seconds": round(time.perf_counter() - start, 1), "ok": rc == 0}
    os.environ["PIPELINE__TICKERS"] = json.dumps(list(BASE))
    start = time.perf_counter()
    rc = airflow_run.dag_test(load_config(), DAILY, args.day, progress=False)
    cli = {"seconds": round(time.perf_counter() - start, 1), "ok": rc == 0}
    lo, hi = min(args.sizes), max(args.sizes)
    slope = (runs[hi]["seconds"] - runs[lo]["seconds"]) / (hi - lo) if hi > lo else None
    print(
        json.dumps(
            {
                "day": args.day.isoformat(),
                "in_process": runs,
                "seconds_per_extra_ticker": round(slope, 2) if slope is not None else None,
                "make_run_four_tickers": cli,
                "cpus": os.cpu_count(),
                "date": dt.date.today().isoformat(),
            }
        )
    )


if __name__ == "__main__":
    main()
