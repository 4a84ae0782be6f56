"""`python -m pipeline run --csv PATH --ticker T`: the daily sequence, outside Airflow.

The same adapters as the DAG, in the same order (pipeline/orchestration/steps.py), for the last
day of the file. Data files, Data Docs, quarantine and the Optuna study go to a
work directory of their own, state/adhoc/<run id>/ (an ad-hoc CSV must not mix with
the daily curated store); it is kept, so every path a run prints still exists, and
only the newest KEEP_RUNS are. Runs and models go to the configured tracking store
(or MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.data import validate
from pipeline.data.bars import BarsError, read_bars_csv
from pipeline.layout import check_ticker
from pipeline.orchestration import steps

KEEP_RUNS = 20


def throwaway_data(cfg: Config, tmp: Path) -> Config:
    """`cfg` reading from a landing dir under `tmp`, with its state and study there too."""
    return cfg.model_copy(
        update={
            "state_dir": tmp / "state",
            "source": cfg.source.model_copy(update={"kind": "csv", "csv_dir": tmp / "landing"}),
            "validation": cfg.validation.model_copy(update={"check_freshness": False}),
            "tune": cfg.tune.model_copy(update={"storage": f"sqlite:///{tmp}/optuna.db"}),
            "model": cfg.model.model_copy(update={"scope": "ticker"}),  # one file, one model
        }
    )


def prune_work_dirs(root: Path, keep: int = KEEP_RUNS) -> None:
    """Remove all but the newest `keep` ad-hoc run directories."""
    runs = sorted(root.glob("cli-*"), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(len(runs) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def run_csv(cfg: Config, csv: str, ticker: str) -> dict[str, Any]:
    """Every step on `csv`; returns the promote step's summary (the CLI's contract line)."""
    check_ticker(ticker)
    try:
        last = read_bars_csv(csv)["Date"].max().date()
    except BarsError as exc:
        raise validate.ValidationFailed(f"{csv}: {exc}") from None
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    adhoc = cfg.layout.adhoc_dir()
    work = adhoc / run_id
    local = throwaway_data(cfg, work)
    local.source.csv_dir.mkdir(parents=True)
    shutil.copy(csv, local.source.csv_dir / f"{ticker}.csv")
    prune_work_dirs(adhoc)
    summary = steps.run_steps(local, steps.start(ticker, last, run_id))["promotion"]
    return {**summary, "work_dir": str(work)}
