"""Small builders shared by test modules: synthetic bars and registered versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from pipeline import tracking
from pipeline.config import Config
from pipeline.lifecycle import registry

# A tiny model budget, as environment variables: real Optuna, Keras and MLflow, seconds
# per trial.
TINY_BUDGET = {
    "PIPELINE__TUNE__N_TRIALS": "2",
    "PIPELINE__TUNE__MAX_EPOCHS": "1",
    "PIPELINE__TUNE__SPACE__UNITS": "[4]",
    "PIPELINE__TUNE__SPACE__LAYERS": "[1]",
    "PIPELINE__TUNE__SPACE__WINDOW": "[5]",
    "PIPELINE__TUNE__SPACE__BATCH_SIZE": "[256]",
}


def random_walk_bars(n: int = 60, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    """`n` business days of OHLCV around a geometric random walk (1 % daily moves)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame(
        {
            "Date": pd.bdate_range(start, periods=n),
            "Open": close * 0.999,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": rng.integers(1_000, 2_000, n).astype(float),
        }
    )


class Constant(PythonModel):
    """A stand-in model that loads anywhere (promotion checks a version loads)."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return model_input


def register_versions(cfg: Config, ticker: str, n: int) -> str:
    """A registered model with `n` versions of one tiny loadable pyfunc, and a pipeline run."""
    import mlflow

    mc = tracking.client(cfg)
    name = registry.model_name(cfg, ticker)
    mc.create_registered_model(name)
    run_id = tracking.parent_run(cfg, ticker, dt.date(2013, 3, 1), f"test-{ticker}")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[])
    for _ in range(n):
        mc.create_model_version(name, source=info.model_uri, run_id=run_id)
    return run_id
