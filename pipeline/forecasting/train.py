"""Train: fit the best parameters on train+validation and log the self-contained pyfunc.

The final fit runs for the best trial's epoch count (no early stopping left to
do: the validation days are now training data), each epoch the same number of
sampled windows as the trial's (`tune.windows_per_epoch`); the test days stay unseen
and the scalers stay fitted on the training split.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from pipeline import tracking
from pipeline.carry import Trained
from pipeline.config import Config
from pipeline.data import store
from pipeline.data.features import FEATURES, fit_har_base, prepare
from pipeline.forecasting import conformal, lite
from pipeline.forecasting.forecaster import OUTPUT_COLUMNS, PriceForecaster
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.forecasting.sampling import WindowBatches
from pipeline.forecasting.spec import min_rows, preprocessing_spec

log = logging.getLogger(__name__)

# The model carries its own copy of pipeline/ (code_paths), so it loads in any env with these.
PIP_REQUIREMENTS = [
    "mlflow==3.17.2",
    "tensorflow-cpu==2.21.0",
    "keras==3.15.1",
    "pandas==3.1.1",
    "exchange-calendars==4.13.2",
    "scipy",
    "pyarrow",
    "ai-edge-litert==2.3.0",
]
CODE_DIR = Path(__file__).resolve().parents[1]  # the whole pipeline package


def fit_final(
    params: LSTMParams,
    feats: pd.DataFrame,
    epochs: int,
    seed: int,
    base: str = "trailing",
    windows_per_epoch: int | None = None,
) -> tuple[keras.Model, Any]:
    """The network fitted on the train and validation rows for `epochs` epochs of
    `windows_per_epoch` windows each (None: every window), as the tuning trial's epochs
    were: the best epoch count then means as many windows seen."""
    prep = prepare(feats, params.window, base)
    keras.utils.set_random_seed(seed)
    model = build_model(params, len(FEATURES))
    rows = np.concatenate([prep.rows["train"], prep.rows["val"]])
    batches = WindowBatches(prep, rows, params.batch_size, windows_per_epoch or len(rows), seed)
    model.fit(batches, epochs=max(1, epochs), verbose=0, shuffle=False)
    return model, prep


def version_spec(
    cfg: Config, prep: Any, run_id: str, combine: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The preprocessing spec a version logged by `run_id` carries (spec.py), from the
    prepared data and the config."""
    fc = cfg.features
    return preprocessing_spec(
        prep.window,
        fc.volatility_window,
        fc.volume_window,
        prep.x_scaler,
        prep.y_scaler,
        cfg.validation.calendar,
        cfg.serving.max_rows,
        run_id,
        prep.base,
        conformal.spec(cfg.model.conformal_step, cfg.model.conformal_lookback),
        combine,
    )


def har_fit(feats: pd.DataFrame) -> dict[str, Any]:
    """HAR fitted on the training rows (pooled over a universe's members): what a version
    combined with HAR carries (intervals.combine_with_har)."""
    return fit_har_base(feats, (feats["split"] == "train").to_numpy())


def input_example(bars: pd.DataFrame, rows: int) -> pd.DataFrame:
    tail = bars.tail(rows).reset_index(drop=True)
    return tail.assign(Date=tail["Date"].dt.strftime("%Y-%m-%d"))


def request_signature(example: pd.DataFrame, output: pd.DataFrame) -> Any:
    """The output schema only; the input example (logged beside it) shows the columns.

    An input schema makes MLflow check every cell of every request in Python before the
    model sees it: with `Any` for the numbers about 4 ms for 250 rows, most of a
    request's cost, and `double` refuses integer JSON (`"Volume": 2175400`) and integer
    pandas columns. The model checks every cell itself (request.check_bars), in NumPy
    for well-formed requests and with clearer messages for the rest.
    """
    from mlflow.models import ModelSignature, infer_signature

    return ModelSignature(outputs=infer_signature(example, output).outputs)


def write_lite(model: keras.Model, window: int, path: Path) -> bool:
    """The network converted for LiteRT (forecasting/lite.py) at `path`, if the conversion
    works and agrees with Keras within lite.TOLERANCE, a window at a time and a request's
    windows at once; else nothing, and TensorFlow serves it."""
    try:
        flatbuffer = lite.convert(model, window, len(FEATURES))
        converted = lite.LiteNetwork(flatbuffer)
        keras_answer = lambda x: np.asarray(model(x, training=False))  # noqa: E731
        gap = max(
            lite.largest_difference(converted, keras_answer, (n, window, len(FEATURES)), tries)
            for n, tries in ((1, 8), (lite.MAX_BATCH, 2))
        )
    except Exception:  # an unconvertible layer: still a good model, served by TensorFlow
        log.warning("LiteRT conversion failed; TensorFlow will serve it", exc_info=True)
        return False
    if gap > lite.TOLERANCE:
        log.warning("LiteRT disagrees with Keras by %.3g; TensorFlow will serve it", gap)
        return False
    path.write_bytes(flatbuffer)
    return True


def code_copy(into: Path) -> str:
    """The pipeline package as a model carries it: its code, not the embedded data sets
    (8 MB of S&P 500 bars would go into every version's artifacts)."""
    target = into / CODE_DIR.name
    shutil.copytree(CODE_DIR, target, ignore=shutil.ignore_patterns("samples", "__pycache__"))
    return str(target)


def log_forecaster(
    cfg: Config,
    model: keras.Model,
    prep: Any,
    bars: pd.DataFrame,
    parent_id: str,
    python_model: PriceForecaster | None = None,
    combine: dict[str, Any] | None = None,
) -> str:
    """Log the pyfunc (network + preprocessing; `combine`: HAR's fit it is combined with)
    to the run; return its model URI."""
    import mlflow

    spec = version_spec(cfg, prep, parent_id, combine)
    with tempfile.TemporaryDirectory() as tmp:
        keras_path, spec_path = Path(tmp) / "network.keras", Path(tmp) / "preprocessing.json"
        model.save(keras_path)
        spec_path.write_text(json.dumps(spec, indent=2))
        artifacts = {"keras_model": str(keras_path), "preprocessing": str(spec_path)}
        lite_path = Path(tmp) / "network.tflite"
        if write_lite(model, prep.window, lite_path):
            artifacts["litert"] = str(lite_path)
        example = input_example(bars, min_rows(spec) + 5)
        loaded = PriceForecaster()
        loaded.load(keras_path, spec_path, lite_path if lite_path.exists() else None)
        output = pd.DataFrame([loaded.forecast_next(example, version="1")])
        tracking.client(cfg)
        with mlflow.start_run(run_id=parent_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model or PriceForecaster(),  # pickled unloaded; loads itself
                artifacts=artifacts,
                signature=request_signature(example, output[OUTPUT_COLUMNS]),
                input_example=example,
                pip_requirements=PIP_REQUIREMENTS,
                code_paths=[code_copy(Path(tmp))],
            )
        # leaving the block ended the run; it stays open until `promote` closes it (or a
        # failed step closes it FAILED), so a later failure does not read as FINISHED
        tracking.client(cfg).update_run(parent_id, status="RUNNING")
    return str(info.model_uri)


def run(
    cfg: Config,
    ticker: str,
    day: dt.date,
    features_path: str,
    parent_run_id: str,
    best_params: dict[str, Any],
    best_epoch: int,
    validation: dict[str, Any],
) -> Trained:
    from pipeline.data import universe

    params = LSTMParams.from_dict(best_params)
    feats = pd.read_parquet(features_path)
    if universe.is_pooled(feats):  # the universe model: every member's bars
        by_member = universe.member_bars(cfg, feats, day)
        bars, tickers = next(iter(by_member.values())), list(by_member)
        seen = universe.fingerprint_input(by_member)
    else:
        bars, tickers = store.read_curated(cfg, ticker, until=day), [ticker]
        seen = bars
    model, prep = fit_final(
        params, feats, best_epoch, cfg.tune.seed, cfg.model.base, cfg.tune.windows_per_epoch
    )
    mc = tracking.client(cfg)
    fingerprint = tracking.fingerprint(seen, tickers)
    tracking.log_batch(
        mc,
        parent_run_id,
        params={**params.as_dict(), "epochs": best_epoch},
        tags={
            **{f"data.{k}": v for k, v in fingerprint.items()},
            **{f"validation.{k}": v for k, v in validation.items()},
        },
    )
    tracking.log_training_data(mc, parent_run_id, feats, features_path, f"features {day}")
    combine = har_fit(feats) if cfg.model.combine_har else None
    model_uri = log_forecaster(cfg, model, prep, bars, parent_run_id, combine=combine)
    return {"model_uri": model_uri, "params": params.as_dict(), "fingerprint": fingerprint}
