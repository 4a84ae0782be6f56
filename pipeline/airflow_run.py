"""`python -m pipeline dag-test DAG DATE`: run a DAG once through real Airflow, quietly.

Airflow's own output goes to state/logs/<dag>-<date>.log; the console gets the
verdict, what failed (if anything) and where the outputs are.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.config import Config

_SIGNALS = ("ERROR", "Traceback", "Error:", "FAIL ", "ValidationFailed", "GX Data Docs")


def dag_test(cfg: Config, dag_id: str, day: dt.date) -> int:
    from pipeline.operate import ensure_airflow_db

    ensure_airflow_db()
    log_path = cfg.layout.run_log(dag_id, day)
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow), "dags", "test", dag_id, day.isoformat()]
    print(f"running {dag_id} for {day} through Airflow (log: {log_path}) ...", flush=True)
    with log_path.open("w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    text = log_path.read_text(errors="replace").splitlines()
    if rc != 0:
        print(f"{dag_id} FAILED for {day} (exit {rc}). Relevant lines from {log_path}:")
        for line in [ln for ln in text if any(s in ln for s in _SIGNALS)][-40:]:
            print("  " + line[:400])
        return 1
    print(f"{dag_id} succeeded for {day}.")
    print(json.dumps(outputs(cfg, day), indent=2))
    print("next: `make serve` (REST on the production model), `make ui` (Airflow, MLflow, Optuna)")
    return 0


def models(cfg: Config) -> dict[str, object]:
    """Per ticker: the newest version, the gate's verdict on it, and what is in production."""
    from pipeline import registry

    out: dict[str, object] = {}
    for ticker in cfg.tickers:
        name = registry.model_name(cfg, ticker)
        cand = registry.version_by_alias(cfg, name, registry.CANDIDATE)
        prod = registry.production_version(cfg, ticker)
        out[name] = {
            "candidate": str(cand.version) if cand else None,
            "gate": cand.tags.get("gate_reason") if cand else None,
            "production": str(prod.version) if prod else None,
            "model_mase": cand.tags.get("model_mase") if cand else None,
            "dm_pvalue": cand.tags.get("dm_pvalue") if cand else None,
        }
    return out


def outputs(cfg: Config, day: dt.date) -> dict[str, object]:
    """Where a user looks after a run."""
    at = cfg.layout
    return {
        "models": models(cfg),
        "mlflow_tracking_uri": cfg.tracking_uri,
        "optuna_storage": cfg.optuna_storage,
        "curated": [str(p) for p in at.curated_tables()],
        "raw_pulls": [str(at.raw_path(t, day)) for t in cfg.tickers],
        "quarantine": [str(q) for t in cfg.tickers if (q := at.quarantine_dir(t, day)).exists()],
        "data_docs": str(at.data_docs() / "index.html"),
        "forecasts": str(at.forecasts_db()),
        "features": [str(f) for t in cfg.tickers if (f := at.features_dir(t, day)).exists()],
        "airflow_home": os.environ.get("AIRFLOW_HOME", ""),
    }
