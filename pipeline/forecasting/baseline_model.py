"""HAR as a served model: the LSTM's pyfunc with HAR's forecast in place of the network.

When no LSTM earns production (pipeline/lifecycle/fallback.py), the day's forecasts are
still written, by the best forecaster the evidence supports. HarForecaster is
PriceForecaster with the network replaced by its untrained head (model.py starts every
network there): the location is the training-mean return, the scale the base scale
times one, where the base is HAR on the range-based variance fitted on the same
training rows (features.fit_har_base, pooled over a universe's members as the LSTM's
scalers are), in the same Student-t, with the same adaptive conformal widths, request
checks and output columns. So evaluation, the gate, the server, promotion, audit and
rollback treat it as any version, and serving it loads no TensorFlow at all.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.forecasting.forecaster import OUTPUT_COLUMNS, PriceForecaster
from pipeline.forecasting.intervals import UNIT_MULTIPLIER_BIAS

WINDOW = 1  # no network reads a window: the features of the newest bar are all HAR needs


def head(x: np.ndarray) -> np.ndarray:
    """The untrained head's output for any windows: location 0 in the label's scaled units
    (the training mean), multiplier 1."""
    return np.tile(np.array([[0.0, UNIT_MULTIPLIER_BIAS]], dtype=np.float32), (len(x), 1))


class HarForecaster(PriceForecaster):
    """See the module docstring: forecast_next and forecast_many as the LSTM's."""

    def load_context(self, context: Any) -> None:
        self.load_spec(Path(context.artifacts["preprocessing"]))
        self.runtime = "har"
        self.use_network(head, batch=1_000_000)

    def load_har(self, spec_path: Path) -> HarForecaster:
        """Ready from a spec file (what load_context does, without MLflow)."""
        self.load_spec(spec_path)
        self.runtime = "har"
        self.use_network(head, batch=1_000_000)
        return self

    def _predict(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return head(np.zeros(sum(len(idx) for _, idx in parts)))


def log_har(cfg: Config, ticker: str, day: dt.date, features_path: str, run_id: str) -> str:
    """Fit HAR on the training rows of the features the LSTM was trained on, log it to
    `run_id` as a pyfunc like the LSTM's; return its model URI."""
    import mlflow

    from pipeline.data import store, universe
    from pipeline.data.features import prepare
    from pipeline.forecasting.spec import min_rows
    from pipeline.forecasting.train import (
        PIP_REQUIREMENTS,
        code_copy,
        input_example,
        request_signature,
        version_spec,
    )

    feats = pd.read_parquet(features_path)
    if universe.is_pooled(feats):  # an example request: the first member's bars
        bars = next(iter(universe.member_bars(cfg, feats, day).values()))
    else:
        bars = store.read_adjusted(cfg, ticker, until=day)
    prep = prepare(feats, WINDOW, "har")
    spec = version_spec(cfg, prep, run_id)
    spec["forecaster"] = "har"
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "preprocessing.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        example = input_example(bars, min_rows(spec) + 5)
        output = pd.DataFrame([HarForecaster().load_har(spec_path).forecast_next(example, "1")])
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=HarForecaster(),
                artifacts={"preprocessing": str(spec_path)},
                signature=request_signature(example, output[OUTPUT_COLUMNS]),
                input_example=example,
                pip_requirements=PIP_REQUIREMENTS,
                code_paths=[code_copy(Path(tmp))],
            )
    return str(info.model_uri)
