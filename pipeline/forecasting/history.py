"""Forecasts over a history: one at every close with a full window, for the evaluation,
the walk-forward backtest and promotion's re-evaluation.

A mixin of the logged pyfunc (PriceForecaster; HarForecaster replaces `_predict`): the
windows of many tickers go through the network together, PREDICT_CHUNK at a time, and
every forecast gets the adaptive widths a request carrying the sessions before it gets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.features import FEATURES, TARGET, base_scale
from pipeline.forecasting import conformal
from pipeline.forecasting.intervals import LEVELS, Forecast

PREDICT_CHUNK = 32_768  # windows gathered at once for evaluation: 60 x 11 floats each, 86 MB
PREDICT_BATCH = 2048


class HistoryForecasts:
    """forecast_all and forecast_many; what they read of the version is set by
    PriceForecaster.load_spec."""

    _window: int
    _base: dict[str, Any]
    _conformal: tuple[float, int]
    df: float
    net: Any
    _features: Callable[[pd.DataFrame], tuple[pd.DataFrame, np.ndarray]]
    _distribution: Callable[..., tuple[np.ndarray, np.ndarray]]
    _har_std: Callable[[np.ndarray], np.ndarray | None]

    def forecast_all(self, bars: pd.DataFrame, since: Any = None) -> pd.DataFrame:
        """A forecast made at every close that has a full window (for evaluation); with
        `since`, at those closes from that day on only."""
        return self.forecast_many({"": bars}, {"": since})[""]

    def forecast_many(
        self, members: Mapping[str, pd.DataFrame], since: Mapping[str, Any] | None = None
    ) -> dict[str, pd.DataFrame]:
        """forecast_all for several tickers' bars (from `since[ticker]` on, where given):
        their windows go through the network together, PREDICT_CHUNK at a time, not one
        `predict` per ticker (about 50 ms each before any work)."""
        since = since or {}
        parts = {t: self._rows(b, since.get(t)) for t, b in members.items()}
        raw = self._predict([(scaled, idx) for _, scaled, idx in parts.values()])
        out, at = {}, 0
        for ticker, (feats, _, idx) in parts.items():
            out[ticker] = self._table(feats, idx, raw[at : at + len(idx)])
            at += len(idx)
        return out

    def _rows(self, bars: pd.DataFrame, since: Any) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """A ticker's features, their scaled matrix, and the rows a forecast is made at."""
        feats, scaled = self._features(bars)
        idx = np.arange(self._window - 1, len(feats))
        if since is not None:
            idx = idx[feats["Date"].to_numpy()[idx] >= np.datetime64(pd.Timestamp(since))]
        return feats, scaled.astype("float32"), idx

    def _predict(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """The network's raw output for the windows ending on each part's rows, in order:
        the parts' rows side by side, windows gathered PREDICT_CHUNK at a time."""
        if not parts:
            return np.zeros((0, 2))
        x = np.concatenate([scaled for scaled, _ in parts])
        offsets = np.cumsum([0, *(len(scaled) for scaled, _ in parts[:-1])])
        rows = np.concatenate([idx + off for (_, idx), off in zip(parts, offsets, strict=True)])
        steps = np.arange(-self._window + 1, 1)
        out = [
            np.asarray(
                self.net.predict(x[chunk[:, None] + steps], batch_size=PREDICT_BATCH, verbose=0)
            )
            for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / PREDICT_CHUNK)))
            if len(chunk)
        ]
        return np.concatenate(out) if out else np.zeros((0, 2))

    def _table(self, feats: pd.DataFrame, idx: np.ndarray, raw: np.ndarray) -> pd.DataFrame:
        """The forecasts made at rows `idx` of `feats` from the network's output `raw`."""
        matrix = feats[FEATURES].to_numpy(dtype="float64")[idx]
        loc, scale = self._distribution(raw, base_scale(matrix, self._base), self._har_std(matrix))
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
