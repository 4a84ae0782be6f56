"""The logged model: an MLflow pyfunc that carries its own preprocessing.

A client sends the most recent raw daily bars (Date, Open, High, Low, Close, Volume) and
gets the next session's forecast close back; features, scaling and windowing happen in here,
with the same code as in training (features.feature_matrix) and the version's own spec
(pipeline/forecasting/spec.py), so serving cannot drift.

A request is checked whole by pipeline/forecasting/request.py (columns, types, dates in
order, prices), in Arrow and NumPy when it is well formed (pandas only to word a refusal),
and only its newest window + warm-up rows go through the features. In a server each NumPy
call costs about 10 us (the caches go cold between requests), so the request path makes few.
The network runs in LiteRT (pipeline.forecasting.lite), or, for versions logged without
its conversion, as a compiled tf.function, instead of keras' `model.predict` (about 50 ms a
call). A request's windows (its newest, and the earlier sessions it carries, forecast again
for the adaptive widths) go through it in one call: a 250-row request took 8.5 ms in-process
one call a window and takes about 1.4 ms (TensorFlow: 37 ms, now 2-3 ms); see lite.py for
the choice and docs/benchmarks.md for the served figures. A scoring server also keeps each
request's windows' outputs (memo.py, `remember`): a client asking every session re-sends
all but the newest, so such a request runs one window.
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
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.data.features import (
    COLUMN,
    FEATURES,
    Scaler,
    base_scale,
    feature_matrix,
    make_features,
)
from pipeline.forecasting import conformal
from pipeline.forecasting.history import HistoryForecasts
from pipeline.forecasting.intervals import (
    LEVELS,
    STUDENT_T_DF,
    combine_with_har,
    distribution,
    z_value,
)
from pipeline.forecasting.lite import (  # no TensorFlow: that loads only if needed
    MAX_BATCH,
    LiteNetwork,
    Network,
    Padded,
    compiled,
)
from pipeline.forecasting.memo import WindowMemo
from pipeline.forecasting.request import TOO_EXTREME, BadInput, finite_price, request_arrays
from pipeline.forecasting.sessions import NextSession
from pipeline.forecasting.spec import lookup_version, min_rows, most_windows

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


class PriceForecaster(HistoryForecasts, PythonModel):
    """Pyfunc around the Keras network; see the module docstring."""

    # Set by the scoring server (answers.answer_as_records): it would only take the
    # one-row DataFrame apart again for the JSON, and building it costs more than the network.
    answers_as_records = False
    # Bytes of answered requests' windows a process keeps (memo.py): none unless told
    # (`remember`); the scoring server keeps serving.remembered_mb, as clients ask daily.
    remembered = 0
    _memo: WindowMemo | None = None

    def load_context(self, context: Any) -> None:
        lite = context.artifacts.get("litert")  # absent in versions logged before it
        self.load(
            Path(context.artifacts["keras_model"]),
            Path(context.artifacts["preprocessing"]),
            Path(lite) if lite else None,
        )

    def load(self, keras_path: Path, spec_path: Path, lite_path: Path | None = None) -> None:
        """Read the spec and ready the network for a request's windows, all in one call: in
        LiteRT when the version carries its conversion (TensorFlow is then not even
        imported: loaded, it slows every request of the process by about 0.8 ms; a version
        converted before the batch was left open goes one call a window), else compiled by
        TensorFlow for one window and for a request's most (lite.Padded)."""
        self.load_spec(spec_path)
        self._keras_path = keras_path
        shape = (1, self._window, len(self._columns))
        if lite_path is not None:
            self.runtime = "litert"
            self.use_network(LiteNetwork(lite_path.read_bytes()), MAX_BATCH)
            return
        self.runtime, batch = "tensorflow", min(most_windows(self.spec), MAX_BATCH)
        one = compiled(self.net, shape)
        many = compiled(self.net, (batch, *shape[1:])) if batch > 1 else one
        self.use_network(Padded(one, many, batch), batch)

    def load_spec(self, spec_path: Path) -> None:
        """Read the version's spec: what every request needs from it, read once."""
        self.spec = json.loads(spec_path.read_text())
        self.x_scaler = Scaler(np.array(self.spec["x_mean"]), np.array(self.spec["x_scale"]))
        self.y_scaler = Scaler(np.array(self.spec["y_mean"]), np.array(self.spec["y_scale"]))
        self._needed, self._window = min_rows(self.spec), int(self.spec["window"])
        self._max_rows = int(self.spec.get("max_rows", 5000))
        self._windows = int(self.spec["vol_window"]), int(self.spec["volume_window"])
        # a version logged by older code names fewer features: take those, in its order
        self._columns = [FEATURES.index(f) for f in self.spec["features"]]
        self._base = self.spec.get("base", {"kind": "trailing"})
        self._har = self.spec.get("combine")  # HAR's fit, when combined with it (else None)
        calibration = self.spec.get("conformal") or {}  # versions logged before: none
        self._conformal = float(calibration.get("step", 0.0)), int(calibration.get("lookback", 0))
        self._next_session = NextSession(self.spec["calendar"])
        self.df = float(self.spec.get("distribution", {}).get("df", STUDENT_T_DF))
        self.active: PriceForecaster = self  # replaced by a newer version when following
        self.served_version = ""

    def use_network(self, network: Network, batch: int) -> None:
        """Forecast through `network`, which takes up to `batch` windows a call: a request's
        windows go in calls of that many (one call for all of them, at a batch of at least
        the version's lookback + 1)."""
        self._network, self.batch = network, batch
        for n in {1, min(batch, most_windows(self.spec))}:  # warm: a first call allocates
            network(np.zeros((n, self._window, len(self._columns)), dtype=np.float32))
        self.remember(self.remembered)

    def remember(self, capacity: int) -> None:
        """Keep up to `capacity` bytes of answered requests' windows and run only the windows
        a request's predecessor lacked (memo.py: the same answers, digit for digit); 0: keep
        none. Only where it pays and stays exact: a version with the adaptive widths (else
        a request is one window), served by a LiteRT network taking any number of windows
        in one call (TensorFlow's fixed-shape graphs run one window and many through
        different code, so their outputs could differ in the last digit)."""
        self.remembered = capacity
        batched = isinstance(self._network, LiteNetwork) and self._network.batched
        useful = capacity > 0 and self._conformal[0] > 0 and batched
        self._memo = WindowMemo(self._forecast_windows, self._window, capacity) if useful else None

    @functools.cached_property
    def net(self) -> Any:
        """The Keras network (evaluation, and serving without LiteRT), loaded when first
        needed."""
        import keras

        return keras.models.load_model(self._keras_path, compile=False)

    def _features(self, bars: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Features exactly as in training, and their scaled matrix (train-fitted scaler)."""
        feats = make_features(bars, *self._windows)
        columns = [FEATURES[i] for i in self._columns]
        return feats, self.x_scaler.transform(feats[columns].to_numpy(dtype="float64"))

    def _distribution(
        self, raw: np.ndarray, volatility: np.ndarray, har: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The network's output and the base scale (already in log-return units) ->
        location and scale of the next log return; combined with HAR's where the version
        says so (`har`: HAR's std forecast for the same rows, intervals.combine_with_har).

        A version logged before the distributional head has one output: a point forecast,
        whose scale is unknown (NaN).
        """
        raw = np.asarray(raw, dtype="float64")
        if raw.ndim == 2 and raw.shape[1] == 1:
            return self.y_scaler.inverse(raw)[:, 0], np.full(len(raw), np.nan)
        loc, scale = distribution(raw, volatility)
        loc = self.y_scaler.inverse(loc.reshape(-1, 1))[:, 0]
        if har is None:
            return loc, scale
        return combine_with_har(loc, scale, har, float(self.y_scaler.mean[0]))

    def _har_std(self, matrix: np.ndarray) -> np.ndarray | None:
        """HAR's std forecast per row of a FEATURES matrix, for a version combined with it."""
        return base_scale(matrix, self._har) if self._har else None

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame | list[dict[str, Any]]:
        """One row of OUTPUT_COLUMNS: a DataFrame, or the same row as JSON-ready records
        where the scoring server asked for them (answers_as_records)."""
        version = self.served_version or self.registered_version()
        row = self.active.forecast_next(model_input, version)
        return [row] if self.answers_as_records else pd.DataFrame([row])

    @property
    def needed_rows(self) -> int:
        """The bars a forecast reads: its window and the features' warm-up."""
        return int(self._needed)

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
        step, lookback = self._conformal  # earlier sessions forecast again for the widths
        past = conformal.past_sessions(step, lookback, len(days) - needed)
        # only the rows the windows and their feature warm-up need (the same numbers as on
        # the whole request: every feature looks back a fixed number of rows)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # refused below
            rows = needed + past
            matrix, _ = feature_matrix(days[-rows:], ohlcv[-rows:], *self._windows)
            scaled = self.x_scaler.transform(matrix[-window - past :, self._columns])
            base = base_scale(matrix[-past - 1 :], self._base)  # HAR's forecast or trailing std
            har = self._har_std(matrix[-past - 1 :])
            if har is not None:  # one check covers both
                base = np.column_stack([base, har])
        if past and not (np.isfinite(scaled).all() and np.isfinite(base).all()):
            # an extreme bar among the earlier sessions only: forecast without the widths'
            # correction rather than refuse a request that used to be answered
            past, scaled, base = 0, scaled[-window:], base[-1:]
        if not (np.isfinite(scaled).all() and np.isfinite(base).all()):
            raise BadInput(TOO_EXTREME)
        base, har = (base[:, 0], base[:, 1]) if base.ndim == 2 else (base, None)
        # the past + 1 windows, newest last, through the network together
        raw = self._forecast_rows(scaled.astype(np.float32))
        loc, scale = self._distribution(raw, base, har)
        close, ret, sd = float(ohlcv[-1, 3]), float(loc[-1]), float(scale[-1])
        if not abs(ret) < 700:  # a return no market makes (or NaN)
            raise BadInput(TOO_EXTREME)
        last = days[-1]  # datetime64[D]: its str is YYYY-MM-DD
        row: dict[str, Any] = {
            "as_of": str(last),
            "for_date": self._next_session(last),
            "last_close": close,
            "forecast_close": finite_price(close, ret),
            "forecast_return": ret,
        }
        known = math.isfinite(sd)  # NaN: a version from before the distributional head
        errors = (np.abs(matrix[-past:, LOG_RET] - loc[:-1]) / scale[:-1]).tolist() if past else []
        for level in LEVELS:  # central intervals of the next close, in price
            q = z_value(level, self.df)
            half = q * sd * (conformal.final_factor(errors, q, level, step) if errors else 1.0)
            pct = round(level * 100)
            row[f"lower_{pct}"] = finite_price(close, ret - half) if known else None
            row[f"upper_{pct}"] = finite_price(close, ret + half) if known else None
        row["scale"] = sd if known else None
        row["model_version"] = version
        return row

    def _forecast_rows(self, rows: np.ndarray) -> np.ndarray:
        """The network's raw output for each window of consecutive `rows` (features), the
        windows the memo keeps looked up rather than run."""
        memo = self._memo  # read once: a swap may drop it meanwhile (follower.py)
        if memo is not None:
            return memo(rows)
        windows = sliding_window_view(rows, self._window, axis=0)
        return self._forecast_windows(windows.transpose(0, 2, 1))

    def _forecast_windows(self, windows: np.ndarray) -> np.ndarray:
        """The network's raw output for (n, window, features) windows, `batch` a call."""
        if len(windows) <= self.batch:
            return self._network(windows)
        return np.concatenate(
            [self._network(windows[i : i + self.batch]) for i in range(0, len(windows), self.batch)]
        )
