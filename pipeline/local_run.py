"""`python -m pipeline run --csv PATH --ticker T`: the daily sequence, outside Airflow.

The same adapters as the DAG, in the same order (pipeline/steps.py), for the last
day of the file. Data files and the Optuna study go to a throw-away directory (an
ad-hoc CSV must not mix with the daily curated store); runs and models go to the
configured tracking store (or MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pipeline import steps, validate
from pipeline.bars import BarsError, read_bars_csv
from pipeline.config import Config


def throwaway_data(cfg: Config, tmp: Path) -> Config:
    """`cfg` reading from a landing dir under `tmp`, with its state and study there too."""
    return cfg.model_copy(
        update={
            "state_dir": tmp / "state",
            "source": cfg.source.model_copy(update={"kind": "csv", "csv_dir": tmp / "landing"}),
            "validation": cfg.validation.model_copy(update={"check_freshness": False}),
            "tune": cfg.tune.model_copy(update={"storage": f"sqlite:///{tmp}/optuna.db"}),
        }
    )


def run_csv(cfg: Config, csv: str, ticker: str) -> dict[str, Any]:
    """Every step on `csv`; returns the promote step's summary (the CLI's contract line)."""
    try:
        last = read_bars_csv(csv)["Date"].max().date()
    except BarsError as exc:
        raise validate.ValidationFailed(f"{csv}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="pipeline-run-") as tmp:
        local = throwaway_data(cfg, Path(tmp))
        local.source.csv_dir.mkdir()
        shutil.copy(csv, local.source.csv_dir / f"{ticker}.csv")
        carry = steps.start(ticker, last, f"cli-{uuid.uuid4().hex[:12]}")
        return steps.run_steps(local, carry)["promotion"]
