"""`make run` / `python -m pipeline daily DATE`: one trading day, as the scheduler runs it.

The daily DAG for the universe, through real Airflow (`airflow dags test`); before it, on
a state where some ticker has no production model, the retrain DAG (nothing could
forecast yet); after it, the retrain the day's report asks for, as its asset event would
schedule it. While they run, each task's start and end is printed (from the journal the
tasks write); at the end, the day's table. Exit 0 when every ticker's day went through,
1 when any failed (its reason is in the table), 2 when a DAG run itself failed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import daily, journal, registry
from pipeline.config import Config

_SIGNALS = ("ERROR", "Traceback", "Error:", "FAIL ", "ValidationFailed")


def dag_test(cfg: Config, dag_id: str, day: dt.date, conf: dict[str, Any] | None = None) -> int:
    """Run one DAG for `day` in Airflow, printing its tasks as they start and end; Airflow's
    own output goes to state/logs/<dag>-<day>.log. Returns the exit status."""
    logs = cfg.layout.logs_dir()
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{dag_id}-{day.isoformat()}.log"
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow), "dags", "test", dag_id, day.isoformat()]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    print(f"{dag_id} for {day} (Airflow's log: {log_path})", flush=True)
    began = time.time()
    seen = 0
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        while True:
            done = proc.poll() is not None
            seen = _print_progress(cfg, dag_id, day, began, seen)
            if done:
                break
            time.sleep(0.5)
    if proc.returncode != 0:
        text = log_path.read_text(errors="replace").splitlines()
        print(f"{dag_id} FAILED for {day} (exit {proc.returncode}). From {log_path}:")
        for line in [ln for ln in text if any(s in ln for s in _SIGNALS)][-25:]:
            print("  " + line[:300])
    return proc.returncode


def _print_progress(cfg: Config, dag_id: str, day: dt.date, began: float, seen: int) -> int:
    events = [e for e in journal.read(cfg, dag_id, day) if e["t"] >= began - 1]
    for event in events[seen:]:
        print("  " + journal.describe(event, began), flush=True)
    return max(seen, len(events))


def unserved(cfg: Config) -> list[str]:
    """Configured tickers no production model can serve."""
    return [t for t in cfg.tickers if registry.production_version(cfg, t) is None]


def run_day(cfg: Config, day: dt.date) -> int:
    """The day end to end; see the module docstring."""
    retrained = ""
    if missing := unserved(cfg):
        reasons = {t: ["no_production"] for t in missing}
        conf = {"day": day.isoformat(), "reasons": reasons, "mode": "tune"}
        if dag_test(cfg, daily.RETRAIN, day, conf) != 0:
            return 2
        retrained = f"before the day: {daily.why(reasons)} (tuned)"
    rc = dag_test(cfg, daily.DAILY, day)
    path = daily.report_path(cfg, day)
    if not path.exists():
        return 2
    rep = json.loads(path.read_text())
    if rep["retrain"] and not retrained:
        conf = {"day": day.isoformat(), "reasons": rep["retrain"]}
        if dag_test(cfg, daily.RETRAIN, day, conf) != 0:
            return 2
        retrained = f"after the day: {daily.why(rep['retrain'])} (refit)"
    elif rep["retrain"]:
        retrained += f"; still asked for: {daily.why(rep['retrain'])}"
    print()
    print(daily.table(rep, retrained))
    print(f"report: {path}; forecasts: {cfg.layout.forecasts_db()}")
    print("next: `make serve` (REST on the production model), `make ui` (Airflow, MLflow, Optuna)")
    if daily.failed_tickers(rep):
        return 1
    return 0 if rc == 0 else 2
