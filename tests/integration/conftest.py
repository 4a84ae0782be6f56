from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import features, ingest, validate
from pipeline.config import Config, load_config

DAY = dt.date(2013, 3, 1)

# A tiny model budget: real Optuna, Keras and MLflow, seconds per trial.
TINY = {
    "PIPELINE__TUNE__N_TRIALS": "2",
    "PIPELINE__TUNE__MAX_EPOCHS": "1",
    "PIPELINE__TUNE__SPACE__UNITS": "[4]",
    "PIPELINE__TUNE__SPACE__LAYERS": "[1]",
    "PIPELINE__TUNE__SPACE__WINDOW": "[5]",
    "PIPELINE__TUNE__SPACE__BATCH_SIZE": "[256]",
}


def store_env(root: Path) -> dict[str, str]:
    return {
        "PIPELINE__STATE_DIR": str(root / "state"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "PIPELINE__TRACKING__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
        "OPTUNA_STORAGE": f"sqlite:///{root / 'optuna.db'}",
        **TINY,
    }


@pytest.fixture(scope="module")
def lifecycle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle")


@pytest.fixture(scope="module")
def tiny_cfg(lifecycle_root: Path) -> Callable[..., Config]:
    (lifecycle_root / "mlruns").mkdir(exist_ok=True)

    def make(**overrides: Any) -> Config:
        env = store_env(lifecycle_root)
        env.update({f"PIPELINE__{k.upper()}": str(v) for k, v in overrides.items()})
        return load_config(environ=env)

    return make


@pytest.fixture(scope="module")
def prepared(tiny_cfg: Callable[..., Config]) -> dict[str, Any]:
    """Ingest, validate and features for the last sample day, once per module."""
    cfg = tiny_cfg()
    pulled = ingest.run(cfg, "GOOG", DAY)
    checked = validate.run(cfg, "GOOG", DAY, pulled["raw_path"])
    feats = features.run(cfg, "GOOG", DAY)
    return {
        "features_path": feats["features_path"],
        "day": DAY.isoformat(),
        "validation": checked["validation"],
    }
