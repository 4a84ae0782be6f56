"""The logged model: an MLflow pyfunc that carries its own preprocessing.

A client sends the most recent raw daily bars (Date, Open, High, Low, Close,
Volume) and gets the next session's forecast close back; features, scaling and
windowing happen in here, exactly as in training, so serving cannot drift.
Inference goes through a compiled tf.function (about 1-3 ms a window on a
2-core CPU) instead of keras' `model.predict` (about 170 ms a call).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel

from pipeline.bars import COLUMNS, NUMBER_COLUMNS
from pipeline.features import BASE_SCALE, FEATURES, Scaler, make_features
from pipeline.intervals import LEVELS, STUDENT_T_DF, z_value

OUTPUT_COLUMNS = [
    "as_of",
    "for_date",
    "last_close",
    "forecast_close",
    "forecast_return",
    "lower_80",
    "upper_80",
    "lower_95",
    "upper_95",
    "scale",
    "model_version",
]


class BadInput(MlflowException):
    """Refused request: a 400 from `mlflow models serve`, with what is wrong."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def preprocessing_spec(
    window: int,
    vol_window: int,
    volume_window: int,
    x_scaler: Scaler,
    y_scaler: Scaler,
    calendar: str,
    max_rows: int,
) -> dict[str, Any]:
    return {
        "window": window,
        "vol_window": vol_window,
        "volume_window": volume_window,
        "features": FEATURES,
        "calendar": calendar,
        "max_rows": max_rows,
        "x_mean": x_scaler.mean.tolist(),
        "x_scale": x_scaler.scale.tolist(),
        "y_mean": y_scaler.mean.tolist(),
        "y_scale": y_scaler.scale.tolist(),
        "distribution": {"family": "student_t", "df": STUDENT_T_DF, "base_scale": BASE_SCALE},
    }


def min_rows(spec: dict[str, Any]) -> int:
    """Rows a request needs: the feature warm-up plus one window."""
    return int(spec["window"]) + max(int(spec["vol_window"]), int(spec["volume_window"]))


def check_bars(frame: pd.DataFrame, needed: int, max_rows: int = 100_000) -> pd.DataFrame:
    """Type and check request rows; raise BadInput saying exactly what is wrong."""
    if not isinstance(frame, pd.DataFrame):
        raise BadInput(f"expected a table of daily bars with columns {COLUMNS}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise BadInput(f"missing column(s) {missing}; send {COLUMNS}")
    if len(frame) < needed:
        raise BadInput(
            f"{len(frame)} row(s) sent; this model needs at least {needed} "
            "consecutive daily bars (its window plus feature warm-up)"
        )
    if len(frame) > max_rows:
        raise BadInput(
            f"{len(frame)} rows sent; at most {max_rows} accepted: send the most "
            f"recent ones (this model uses the last {needed})"
        )
    dates = pd.to_datetime(frame["Date"], errors="coerce", format="ISO8601")
    if dates.isna().any():
        bad = frame["Date"][dates.isna()].head(3).tolist()
        raise BadInput(f"Date must be YYYY-MM-DD; unreadable: {bad}")
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    columns = {"Date": dates.to_numpy()}
    for col in NUMBER_COLUMNS:
        nums = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
        if np.isnan(nums).any():
            days = dates[np.isnan(nums)].dt.strftime("%Y-%m-%d").head(3).tolist()
            raise BadInput(f"{col} must be a number on every row; missing or text on {days}")
        columns[col] = nums
    bars = pd.DataFrame(columns)
    if bars["Date"].duplicated().any():
        dup = bars["Date"][bars["Date"].duplicated()].dt.strftime("%Y-%m-%d").head(3).tolist()
        raise BadInput(f"duplicate dates {dup}: send one row per day")
    if not bars["Date"].is_monotonic_increasing:
        raise BadInput("dates must be in increasing order, oldest first")
    if (bars[["Open", "High", "Low", "Close"]] <= 0).any().any() or (bars["Volume"] < 0).any():
        raise BadInput("prices must be > 0 and Volume >= 0")
    return bars.reset_index(drop=True)


class PriceForecaster(PythonModel):
    """Pyfunc around the Keras network; see the module docstring."""

    def load_context(self, context: Any) -> None:
        self.load(Path(context.artifacts["keras_model"]), Path(context.artifacts["preprocessing"]))
        from pipeline.serving import maybe_follow

        maybe_follow(self)  # only when serving with PIPELINE_FOLLOW_MODEL set

    def load(self, keras_path: Path, spec_path: Path) -> None:
        import keras
        import tensorflow as tf

        self.spec = json.loads(spec_path.read_text())
        self.x_scaler = Scaler(np.array(self.spec["x_mean"]), np.array(self.spec["x_scale"]))
        self.y_scaler = Scaler(np.array(self.spec["y_mean"]), np.array(self.spec["y_scale"]))
        self.net = keras.models.load_model(keras_path, compile=False)
        shape = [1, int(self.spec["window"]), len(self.spec["features"])]
        net = self.net
        # One compiled graph for the serving shape: load once, warm up once, then ~ms calls.
        self._one = tf.function(
            lambda x: net(x, training=False),
            jit_compile=True,
            input_signature=[tf.TensorSpec(shape, tf.float32)],
        )
        self._one(np.zeros(shape, dtype="float32"))
        self._calendar: Any = None
        self.df = float(self.spec.get("distribution", {}).get("df", STUDENT_T_DF))
        self.active: PriceForecaster = self  # replaced by a newer version when following
        self.served_version = ""

    def _next_session(self, day: pd.Timestamp) -> str:
        import exchange_calendars as xcals

        if self._calendar is None:
            self._calendar = xcals.get_calendar(self.spec["calendar"], start="1990-01-01")
        try:
            return f"{self._calendar.next_session(day):%Y-%m-%d}"
        except (ValueError, KeyError):  # a date the calendar does not know: next weekday
            return f"{day + pd.offsets.BDay(1):%Y-%m-%d}"

    def _features(self, bars: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Features exactly as in training, and their scaled matrix (train-fitted scaler)."""
        feats = make_features(bars, int(self.spec["vol_window"]), int(self.spec["volume_window"]))
        return feats, self.x_scaler.transform(feats[FEATURES].to_numpy(dtype="float64"))

    def _distribution(
        self, raw: np.ndarray, volatility: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The network's output and the trailing volatility (the base scale, already in
        log-return units) -> location and scale of the next log return.

        A version logged before the distributional head has one output: a point forecast,
        whose scale is unknown (NaN).
        """
        raw = np.asarray(raw, dtype="float64")
        if raw.ndim == 2 and raw.shape[1] == 1:
            return self.y_scaler.inverse(raw)[:, 0], np.full(len(raw), np.nan)
        from pipeline.model import distribution

        loc, scale = distribution(raw, volatility)
        return self.y_scaler.inverse(loc.reshape(-1, 1))[:, 0], scale

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.active.forecast_next(model_input).assign(model_version=self.served_version)

    def forecast_next(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """The next session's forecast from the most recent raw bars."""
        needed, most = min_rows(self.spec), int(self.spec.get("max_rows", 5000))
        feats, scaled = self._features(check_bars(model_input, needed, most))
        window = int(self.spec["window"])
        x = scaled[-window:][None, :, :].astype("float32")
        last = feats.iloc[-1]
        loc, scale = self._distribution(np.asarray(self._one(x)), last[[BASE_SCALE]].to_numpy())
        close, ret, sd = float(last["Close"]), float(loc[0]), float(scale[0])
        row = {
            "as_of": f"{last['Date']:%Y-%m-%d}",
            "for_date": self._next_session(last["Date"]),
            "last_close": close,
            "forecast_close": close * math.exp(ret),
            "forecast_return": ret,
        }
        known = math.isfinite(sd)  # NaN: a version from before the distributional head
        for level in LEVELS:  # central intervals of the next close, in price
            half = z_value(level, self.df) * sd
            pct = round(level * 100)
            row[f"lower_{pct}"] = close * math.exp(ret - half) if known else None
            row[f"upper_{pct}"] = close * math.exp(ret + half) if known else None
        row["scale"] = sd if known else None
        return pd.DataFrame([row])

    def forecast_all(self, bars: pd.DataFrame) -> pd.DataFrame:
        """A forecast made at every close that has a full window (for evaluation)."""
        feats, scaled = self._features(bars)
        window = int(self.spec["window"])
        x = scaled.astype("float32")
        idx = np.arange(window - 1, len(x))
        windows = x[idx[:, None] + np.arange(-window + 1, 1)[None, :]]
        raw = self.net.predict(windows, batch_size=512, verbose=0)
        loc, scale = self._distribution(raw, feats[BASE_SCALE].to_numpy()[idx])
        close = feats["Close"].to_numpy()[idx]
        return pd.DataFrame(
            {
                "as_of": feats["Date"].to_numpy()[idx],
                "last_close": close,
                "forecast_close": close * np.exp(loc),
                "loc": loc,
                "scale": scale,
                "df": self.df,
            }
        )
