"""Accuracy on each ticker's default test days: tuned pipeline vs every baseline.

    .venv/bin/python -m bench.accuracy [--tickers AAPL GOOG IBM MSFT] [--trials 8] [--epochs 15]

Per ticker, the pipeline's own tune -> train -> logged pyfunc on the daily run's split of
the last sample day, against naive, EWMA, HAR on range-based variance and GJR-GARCH-t on
the same test days; per ticker and pooled over tickers (interval scores in % of the close,
DM on the per-session mean difference), with coverage tests (backtest_scores). Point
metrics for the model, naive and the tutorial recipe (which has no interval).

The tutorial recipe: LSTM(128) -> Dropout(0.3) -> LSTM(64) -> Dropout(0.3) ->
Dense(32) -> Dense(1) on min-max-scaled Close *levels* (scaler fit on train),
60-day window, Adam, batch 32, early stopping on validation. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from bench.common import sample_features, timed
from pipeline.config import throwaway_config
from pipeline.evaluation import evaluate, statistics


def tutorial_forecasts(feats: pd.DataFrame, window: int = 60, seed: int = 42) -> np.ndarray:
    """Next-close forecasts of the tutorial model for every test row of `feats`."""
    close = feats["Close"].to_numpy(dtype="float64")
    split = feats["split"].to_numpy()
    train = split == "train"
    lo, hi = close[train].min(), close[train].max()
    scaled = (close - lo) / (hi - lo)
    target = np.append(scaled[1:], np.nan)  # next close, scaled

    def windows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = rows[rows >= window - 1]
        idx = rows[:, None] + np.arange(-window + 1, 1)[None, :]
        return scaled[idx][..., None].astype("float32"), target[rows].astype("float32")

    x_tr, y_tr = windows(np.flatnonzero(train))
    x_va, y_va = windows(np.flatnonzero(split == "val"))
    x_te, _ = windows(np.flatnonzero(split == "test"))
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((window, 1)),
            keras.layers.LSTM(128, return_sequences=True),
            keras.layers.Dropout(0.3),
            keras.layers.LSTM(64),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(
        x_tr,
        y_tr,
        validation_data=(x_va, y_va),
        epochs=50,
        batch_size=32,
        verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)],
    )
    return model.predict(x_te, verbose=0)[:, 0] * (hi - lo) + lo


def tuned_pipeline(
    ticker: str, bars: pd.DataFrame, feats: pd.DataFrame, trials: int, epochs: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pipeline's tune -> best -> train steps on throw-away stores; its pyfunc's forecasts."""
    from pipeline.data import store
    from pipeline.orchestration import steps

    with tempfile.TemporaryDirectory() as tmp:
        cfg = throwaway_config(Path(tmp), tune__n_trials=trials, tune__max_epochs=epochs)
        path = Path(tmp) / "features.parquet"
        feats.to_parquet(path)
        day = bars["Date"].iloc[-1].date()
        store.publish_curated(cfg, ticker, bars, pd.DataFrame(), day)
        carry = steps.start(ticker, day, "bench")
        carry["features_path"], carry["validation"] = str(path), {}
        carry = steps.run_steps(cfg, carry, ["tune", "best", "train"])
        days = evaluate.test_days(feats)
        forecasts = evaluate.align(days, evaluate.forecasts_of(carry["model_uri"], bars))
    return forecasts, {"best_params": carry["best_params"], "trials": carry["trials"]}


def session_table(
    ticker: str, days: pd.DataFrame, tuned: pd.DataFrame, bars: pd.DataFrame, feats: pd.DataFrame
) -> pd.DataFrame:
    """One row per test day: every forecaster's intervals and losses, as the backtest keeps."""
    from pipeline.evaluation.backtest import losses
    from pipeline.forecasting.intervals import Forecast

    last = days["last_close"].to_numpy()
    df = float(tuned["df"].iloc[0]) if "df" in tuned else None
    every = {"model": Forecast(last, tuned["loc"].to_numpy(), tuned["scale"].to_numpy(), df)}
    every.update({k.rstrip("_"): f for k, f in evaluate.baselines(days, bars, feats).items()})
    cols: dict[str, np.ndarray] = {}
    for name, forecast in every.items():
        cols.update(losses(days, name, forecast))
    return days.assign(ticker=ticker, **cols)


def point_report(days: pd.DataFrame, forecasts: dict[str, np.ndarray]) -> dict[str, Any]:
    actual, last = days["actual"].to_numpy(), days["last_close"].to_numpy()
    out = {}
    for name, forecast in forecasts.items():
        scores = evaluate.score(actual, forecast, last).as_dict()
        dm, p = statistics.diebold_mariano(forecast - actual, last - actual)
        out[name] = {
            **{k: round(v, 4) for k, v in scores.items()},
            "dm_stat_vs_naive": round(dm, 3),
            "dm_pvalue": round(p, 4),
        }
    return out


def main() -> None:
    from pipeline.evaluation.backtest_scores import summarize

    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", nargs="+", default=["AAPL", "GOOG", "IBM", "MSFT"])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--no-tutorial", action="store_true", help="skip the tutorial recipe")
    args = parser.parse_args()
    seconds: dict[str, float] = {}
    tables, points, spans, tuned_info = [], {}, {}, {}
    for ticker in args.tickers:
        bars, feats = sample_features(ticker)
        days = evaluate.test_days(feats)
        with timed(seconds, f"tuned_pipeline_{ticker}"):
            tuned, tuned_info[ticker] = tuned_pipeline(
                ticker, bars, feats, args.trials, args.epochs
            )
        forecasts = {"naive": days["last_close"].to_numpy()}
        forecasts["tuned_pipeline"] = tuned["forecast_close"].to_numpy()
        if not args.no_tutorial:
            with timed(seconds, f"tutorial_recipe_{ticker}"):
                forecasts["tutorial_recipe"] = tutorial_forecasts(feats)
        points[ticker] = point_report(days, forecasts)
        spans[ticker] = {
            "test_days": len(days),
            "first": f"{days['for_date'].iloc[0]:%Y-%m-%d}",
            "last": f"{days['for_date'].iloc[-1]:%Y-%m-%d}",
        }
        tables.append(session_table(ticker, days, tuned, bars, feats))
    summary = summarize(pd.concat(tables, ignore_index=True))
    out: dict[str, Any] = {
        "series": "embedded universe (adjusted), each ticker's daily-run test split",
        "test_days": spans,
        "seconds": seconds,
        "tuned": tuned_info,
        "point": points,
        "intervals": {
            k: summary[k] for k in ("pooled", "per_ticker", "dm_pooled", "dm_per_ticker")
        },
        "note": "interval scores in % of the close; model = tuned pipeline",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
