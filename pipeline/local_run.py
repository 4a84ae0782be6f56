"""`python -m pipeline run --csv PATH --ticker T`: the same steps, outside Airflow.

Data files and the Optuna study go to a throw-away directory (an ad-hoc CSV
must not mix with the daily curated store); runs and models go to the
configured tracking store (or MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pipeline import features, flow, ingest, validate
from pipeline.bars import BarsError, read_bars_csv
from pipeline.config import Config


def run_csv(cfg: Config, csv: str, ticker: str) -> dict[str, Any]:
    try:
        last = read_bars_csv(csv)["Date"].max().date()
    except BarsError as exc:
        raise validate.ValidationFailed(f"{csv}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="pipeline-run-") as tmp:
        landing = Path(tmp) / "landing"
        landing.mkdir()
        shutil.copy(csv, landing / f"{ticker}.csv")
        local = cfg.model_copy(
            update={
                "state_dir": Path(tmp) / "state",
                "source": cfg.source.model_copy(update={"kind": "csv", "csv_dir": landing}),
                "validation": cfg.validation.model_copy(update={"check_freshness": False}),
                "tune": cfg.tune.model_copy(update={"storage": f"sqlite:///{tmp}/optuna.db"}),
            }
        )
        pulled = ingest.run(local, ticker, last)
        checked = validate.run(local, ticker, last, pulled["raw_path"])
        feats = features.run(local, ticker, last)
        return flow.train_and_promote(
            local,
            ticker,
            last.isoformat(),
            feats["features_path"],
            f"cli-{uuid.uuid4().hex[:12]}",
            checked["validation"],
        )
