"""The logged model: an MLflow pyfunc that carries its own preprocessing.

A client sends the most recent raw daily bars (Date, Open, High, Low, Close,
Volume) and gets the next session's forecast close back; features, scaling and
windowing happen in here, with the same code as in training
(features.feature_matrix), so serving cannot drift.

A request is checked whole by pipeline/forecasting/request.py (columns, types, dates in
order, prices), in Arrow and NumPy when it is well formed (pandas only to word a refusal),
and only its newest window + warm-up rows go through the features. In a server each NumPy call costs
about 10 us (the caches go cold between requests), so the request path makes few. The
network runs in LiteRT (pipeline.forecasting.lite; about 0.05 ms a window for one layer on a 2-core
CPU), or, for versions logged without its conversion, as a compiled tf.function (about
0.3 ms), instead of keras' `model.predict` (about 50 ms a call).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from pipeline.data.features import (
    COLUMN,
    FEATURES,
    HAR_WINDOWS,
    TARGET,
    Scaler,
    base_scale,
    feature_matrix,
    make_features,
)
from pipeline.forecasting import conformal
from pipeline.forecasting.intervals import LEVELS, STUDENT_T_DF, Forecast, distribution, z_value
from pipeline.forecasting.lite import (  # no TensorFlow: that loads only if needed
    LiteNetwork,
    Network,
)
from pipeline.forecasting.request import TOO_EXTREME, BadInput, request_arrays

LOG_RET = COLUMN["log_ret"]
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


def preprocessing_spec(
    window: int,
    vol_window: int,
    volume_window: int,
    x_scaler: Scaler,
    y_scaler: Scaler,
    calendar: str,
    max_rows: int,
    run_id: str | None = None,
    base: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the pyfunc needs besides the network: windows, scalers, the base scale's fit,
    the adaptive conformal widths' settings (none: the intervals as the network gives them)."""
    base = base or {"kind": "trailing"}
    return {
        "run_id": run_id,  # the run that logged it: its registered version can be looked up
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
        "distribution": {"family": "student_t", "df": STUDENT_T_DF, "base_scale": base["kind"]},
        "base": base,
        "har_window": HAR_WINDOWS[-1],
        "conformal": calibration,
    }


def min_rows(spec: dict[str, Any]) -> int:
    """Rows a request needs: the feature warm-up plus one window."""
    warm = (int(spec["vol_window"]), int(spec["volume_window"]), int(spec.get("har_window", 0)))
    return int(spec["window"]) + max(warm)


def lookup_version(run_id: str | None) -> str:
    """The one registered version logged by `run_id`, or "unknown" (no run id recorded,
    no registry reachable, or not exactly one version)."""
    import mlflow

    # without a configured store there is no registry to ask (and MLflow's default would
    # create one in the working directory)
    if not run_id or not mlflow.is_tracking_uri_set():
        return "unknown"
    try:
        found = mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")
    except Exception:  # any registry trouble: the answer itself is still good
        return "unknown"
    return str(found[0].version) if len(found) == 1 else "unknown"


def compiled(net: Any, shape: tuple[int, ...]) -> Network:
    """The network as one compiled graph for `shape`, called through its concrete function
    (skips tf.function's argument binding) with a tensor (arrays convert slowly)."""
    import tensorflow as tf

    graph = tf.function(
        lambda x: net(x, training=False),
        jit_compile=True,
        input_signature=[tf.TensorSpec(shape, tf.float32)],
    ).get_concrete_function()
    return lambda x: np.asarray(graph(tf.constant(x, dtype=tf.float32)))


def _price(close: float, log_return: float) -> float:
    """close * exp(log_return), or BadInput when that is not a finite number (plain floats:
    for one row NumPy's calls cost more than the arithmetic)."""
    try:
        price = close * math.exp(log_return)
    except OverflowError:
        price = math.inf
    if not math.isfinite(price):
        raise BadInput(TOO_EXTREME)
    return price


class PriceForecaster(PythonModel):
    """Pyfunc around the Keras network; see the module docstring."""

    # Set by the scoring server (answers.answer_as_records): it would only take the
    # one-row DataFrame apart again for the JSON, and building it costs more than the network.
    answers_as_records = False

    def load_context(self, context: Any) -> None:
        lite = context.artifacts.get("litert")  # absent in versions logged before it
        self.load(
            Path(context.artifacts["keras_model"]),
            Path(context.artifacts["preprocessing"]),
            Path(lite) if lite else None,
        )
        from pipeline.serving.production import maybe_follow

        maybe_follow(self)  # only when serving with PIPELINE_FOLLOW_MODEL set

    def load(self, keras_path: Path, spec_path: Path, lite_path: Path | None = None) -> None:
        """Read the spec and ready the network for one window at a time: in LiteRT when the
        version carries its conversion (TensorFlow is then not even imported: loaded, it
        slows every request of the process by about 0.8 ms), else compiled by TensorFlow."""
        self.spec = json.loads(spec_path.read_text())
        self.x_scaler = Scaler(np.array(self.spec["x_mean"]), np.array(self.spec["x_scale"]))
        self.y_scaler = Scaler(np.array(self.spec["y_mean"]), np.array(self.spec["y_scale"]))
        self._keras_path = keras_path
        # what every request needs from the spec, read once
        self._needed, self._window = min_rows(self.spec), int(self.spec["window"])
        self._max_rows = int(self.spec.get("max_rows", 5000))
        self._windows = int(self.spec["vol_window"]), int(self.spec["volume_window"])
        # a version logged by older code names fewer features: take those, in its order
        self._columns = [FEATURES.index(f) for f in self.spec["features"]]
        self._base = self.spec.get("base", {"kind": "trailing"})
        calibration = self.spec.get("conformal") or {}  # versions logged before: none
        self._conformal = float(calibration.get("step", 0.0)), int(calibration.get("lookback", 0))
        shape = (1, self._window, len(self._columns))
        self._one: Network
        if lite_path is not None:
            self.runtime, self._one = "litert", LiteNetwork(lite_path.read_bytes())
        else:
            self.runtime, self._one = "tensorflow", compiled(self.net, shape)
        self._one(np.zeros(shape, dtype=np.float32))  # warm: the first call allocates
        self._calendar: Any = None
        self._sessions: dict[np.datetime64, str] = {}
        self.df = float(self.spec.get("distribution", {}).get("df", STUDENT_T_DF))
        self.active: PriceForecaster = self  # replaced by a newer version when following
        self.served_version = ""

    @functools.cached_property
    def net(self) -> Any:
        """The Keras network (evaluation, and serving without LiteRT), loaded when first
        needed."""
        import keras

        return keras.models.load_model(self._keras_path, compile=False)

    def _next_session(self, day: np.datetime64) -> str:
        if day not in self._sessions:  # the same few days are asked again and again
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[day] = self._lookup_next_session(pd.Timestamp(day))
        return self._sessions[day]

    def _lookup_next_session(self, day: pd.Timestamp) -> str:
        import exchange_calendars as xcals

        if self._calendar is None:
            self._calendar = xcals.get_calendar(self.spec["calendar"], start="1990-01-01")
        try:
            return f"{self._calendar.next_session(day):%Y-%m-%d}"
        except (ValueError, KeyError):  # a date the calendar does not know: next weekday
            return f"{day + pd.offsets.BDay(1):%Y-%m-%d}"

    def _features(self, bars: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Features exactly as in training, and their scaled matrix (train-fitted scaler)."""
        feats = make_features(bars, *self._windows)
        columns = [FEATURES[i] for i in self._columns]
        return feats, self.x_scaler.transform(feats[columns].to_numpy(dtype="float64"))

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
        loc, scale = distribution(raw, volatility)
        return self.y_scaler.inverse(loc.reshape(-1, 1))[:, 0], scale

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame | list[dict[str, Any]]:
        """One row of OUTPUT_COLUMNS: a DataFrame, or the same row as JSON-ready records
        where the scoring server asked for them (answers_as_records)."""
        version = self.served_version or self.registered_version()
        row = self.active.forecast_next(model_input, version)
        return [row] if self.answers_as_records else pd.DataFrame([row])

    def registered_version(self) -> str:
        """The registry version of this model, looked up once by the run that logged it
        (the server's alias follower sets it instead); "unknown" when it cannot be told."""
        if not getattr(self, "_registered", None):
            self._registered = lookup_version(self.spec.get("run_id"))
        return str(self._registered)

    def forecast_next(self, model_input: pd.DataFrame, version: str = "") -> dict[str, Any]:
        """The next session's forecast from the most recent raw bars (OUTPUT_COLUMNS;
        `version` is what model_version says)."""
        needed, window = self._needed, self._window
        days, ohlcv = request_arrays(model_input, needed, self._max_rows)
        past = self._past_sessions(len(days))  # earlier sessions forecast for calibration
        # only the rows the windows and their feature warm-up need (the same numbers as on
        # the whole request: every feature looks back a fixed number of rows)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # refused below
            rows = needed + past
            matrix, _ = feature_matrix(days[-rows:], ohlcv[-rows:], *self._windows)
            scaled = self.x_scaler.transform(matrix[-window - past :, self._columns])
            base = base_scale(matrix[-past - 1 :], self._base)  # HAR's forecast or trailing std
        if past and not (np.isfinite(scaled).all() and np.isfinite(base).all()):
            # an extreme bar among the earlier sessions only: forecast without the widths'
            # correction rather than refuse a request that used to be answered
            past, scaled, base = 0, scaled[-window:], base[-1:]
        if not (np.isfinite(scaled).all() and np.isfinite(base).all()):
            raise BadInput(TOO_EXTREME)
        x = scaled.astype(np.float32)
        raw = [self._one(x[None, i : i + window]) for i in range(past + 1)]
        loc, scale = self._distribution(np.concatenate(raw), base)
        close, ret, sd = float(ohlcv[-1, 3]), float(loc[-1]), float(scale[-1])
        if not abs(ret) < 700:  # a return no market makes (or NaN)
            raise BadInput(TOO_EXTREME)
        last = days[-1]  # datetime64[D]: its str is YYYY-MM-DD
        row: dict[str, Any] = {
            "as_of": str(last),
            "for_date": self._next_session(last),
            "last_close": close,
            "forecast_close": _price(close, ret),
            "forecast_return": ret,
        }
        known = math.isfinite(sd)  # NaN: a version from before the distributional head
        errors = (np.abs(matrix[-past:, LOG_RET] - loc[:-1]) / scale[:-1]).tolist() if past else []
        for level in LEVELS:  # central intervals of the next close, in price
            q = z_value(level, self.df)
            half = q * sd * self._factor(errors, q, level)
            pct = round(level * 100)
            row[f"lower_{pct}"] = _price(close, ret - half) if known else None
            row[f"upper_{pct}"] = _price(close, ret + half) if known else None
        row["scale"] = sd if known else None
        row["model_version"] = version
        return row

    def _past_sessions(self, rows: int) -> int:
        """How many sessions before the newest to forecast again for the adaptive widths:
        the version's lookback, or as many as the request's extra rows allow."""
        step, lookback = self._conformal
        return min(lookback, rows - self._needed) if step > 0 else 0

    def _factor(self, errors: list[float], q: float, level: float) -> float:
        return conformal.final_factor(errors, q, level, self._conformal[0]) if errors else 1.0

    def forecast_all(self, bars: pd.DataFrame) -> pd.DataFrame:
        """A forecast made at every close that has a full window (for evaluation)."""
        feats, scaled = self._features(bars)
        window = self._window
        x = scaled.astype("float32")
        idx = np.arange(window - 1, len(x))
        windows = x[idx[:, None] + np.arange(-window + 1, 1)[None, :]]
        raw = self.net.predict(windows, batch_size=512, verbose=0)
        base = base_scale(feats[FEATURES].to_numpy(dtype="float64")[idx], self._base)
        loc, scale = self._distribution(raw, base)
        close = feats["Close"].to_numpy()[idx]
        # adaptive widths from this model's misses on the sessions before each: exactly
        # what a request carrying those sessions gets
        realised = feats[TARGET].to_numpy(dtype="float64")[idx]
        f = conformal.calibrate(Forecast(close, loc, scale, self.df), realised, *self._conformal)
        assert f.factors is not None
        return pd.DataFrame(
            {
                "as_of": feats["Date"].to_numpy()[idx],
                "last_close": close,
                "forecast_close": close * np.exp(loc),
                "loc": loc,
                "scale": scale,
                "df": self.df,
                **{f"factor_{round(level * 100)}": f.factors[level] for level in LEVELS},
                "conformal_step": self._conformal[0],
                "conformal_lookback": self._conformal[1],
            }
        )
