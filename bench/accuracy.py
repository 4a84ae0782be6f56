"""Accuracy on the same held-out days: tuned pipeline vs naive vs the tutorial recipe.

    .venv/bin/python -m bench.accuracy [--trials 8] [--epochs 15]

Point metrics for every model; for the intervals, coverage at 80/95 %, interval
(Winkler) scores, CRPS and the DM test of the 80 % interval score against the naive
interval, for the tuned model and both baselines (naive: random walk with drift and the
trailing 20-session std; EWMA: RiskMetrics 0.94). The tutorial recipe has no interval.

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
from pipeline import evaluate
from pipeline.config import throwaway_config


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
    bars: pd.DataFrame, feats: pd.DataFrame, trials: int, epochs: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pipeline's tune -> best -> train steps on throw-away stores; its pyfunc's forecasts."""
    from pipeline import steps, store

    with tempfile.TemporaryDirectory() as tmp:
        cfg = throwaway_config(Path(tmp), tune__n_trials=trials, tune__max_epochs=epochs)
        path = Path(tmp) / "features.parquet"
        feats.to_parquet(path)
        day = bars["Date"].iloc[-1].date()
        store.publish_curated(cfg, "GOOG", bars, pd.DataFrame(), day)
        carry = steps.start("GOOG", day, "bench")
        carry["features_path"], carry["validation"] = str(path), {}
        carry = steps.run_steps(cfg, carry, ["tune", "best", "train"])
        days = evaluate.test_days(feats)
        forecasts = evaluate.align(days, evaluate.forecasts_of(carry["model_uri"], bars))
    return forecasts, {"best_params": carry["best_params"], "trials": carry["trials"]}


def interval_report(
    days: pd.DataFrame, tuned: pd.DataFrame, bars: pd.DataFrame, feats: pd.DataFrame
) -> dict[str, Any]:
    """Interval scores of the tuned model and both baselines, DM vs naive and vs EWMA."""
    res = evaluate.compare_intervals(days, tuned, None, evaluate.baselines(days, bars, feats))
    pick = ("coverage_80", "coverage_95", "interval_score_80", "interval_score_95", "crps")
    out: dict[str, Any] = {}
    for who, prefix in (("tuned_pipeline", "model_"), ("naive", "naive_"), ("ewma", "ewma_")):
        out[who] = {k: round(res[f"{prefix}{k}"], 4) for k in pick}
    out["tuned_pipeline"]["interval_dm_stat_vs_naive"] = round(res["interval_dm_stat"], 3)
    out["tuned_pipeline"]["interval_dm_pvalue_vs_naive"] = round(res["interval_dm_pvalue"], 4)
    out["tuned_pipeline"]["interval_dm_stat_vs_ewma"] = round(res["interval_dm_ewma_stat"], 3)
    out["tuned_pipeline"]["interval_dm_pvalue_vs_ewma"] = round(res["interval_dm_ewma_pvalue"], 4)
    out["tuned_pipeline"]["interval_score_80_vs_ewma"] = round(
        res["model_interval_score_80"] / res["ewma_interval_score_80"], 4
    )
    out["tutorial_recipe"] = "no interval: it predicts a point only"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    bars, feats = sample_features()
    days = evaluate.test_days(feats)
    seconds: dict[str, float] = {}
    with timed(seconds, "tuned_pipeline"):
        tuned, info = tuned_pipeline(bars, feats, args.trials, args.epochs)
    with timed(seconds, "tutorial_recipe"):
        tutorial = tutorial_forecasts(feats)
    actual, last = days["actual"].to_numpy(), days["last_close"].to_numpy()
    out: dict[str, Any] = {
        "series": "GOOG (shipped sample)",
        "test_days": len(days),
        "first_test_date": f"{days['for_date'].iloc[0]:%Y-%m-%d}",
        "last_test_date": f"{days['for_date'].iloc[-1]:%Y-%m-%d}",
        "seconds": seconds,
        "tuned": info,
        "models": {},
    }
    out["intervals"] = interval_report(days, tuned, bars, feats)
    for name, forecast in (
        ("naive", last),
        ("tuned_pipeline", tuned["forecast_close"].to_numpy()),
        ("tutorial_recipe", tutorial),
    ):
        scores = evaluate.score(actual, forecast, last).as_dict()
        dm, p = evaluate.diebold_mariano(forecast - actual, last - actual)
        out["models"][name] = {
            **{k: round(v, 4) for k, v in scores.items()},
            "dm_stat_vs_naive": round(dm, 3),
            "dm_pvalue": round(p, 4),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
