"""Training cost: one universe model for every ticker vs one model per ticker.

    .venv/bin/python -m bench.training_cost [--tickers AAPL GOOG IBM MSFT] [--trials 4]

The pipeline's own tune -> best -> train steps on throw-away stores, with the same
budget (trials, epochs) per study: once on the pooled features of every ticker (the
universe model), then once per ticker. Each ticker's features are the daily run's for
the last sample day. Prints one JSON object: wall seconds and trials of each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import sample_features
from pipeline.config import throwaway_config
from pipeline.data import store
from pipeline.orchestration import steps


def train(
    root: Path, key: str, feats: pd.DataFrame, bars: dict[str, pd.DataFrame], budget: dict[str, Any]
) -> dict[str, Any]:
    cfg = throwaway_config(root, **budget)
    day = next(iter(bars.values()))["Date"].iloc[-1].date()
    for ticker, b in bars.items():
        store.publish_curated(cfg, ticker, b, pd.DataFrame(), day)
    path = root / f"{key}.parquet"
    feats.to_parquet(path)
    carry = steps.start(key, day, f"bench-{key}")
    carry["features_path"], carry["validation"] = str(path), {}
    start = time.perf_counter()
    carry = steps.run_steps(cfg, carry, ["tune", "best", "train"])
    return {"seconds": round(time.perf_counter() - start, 1), "trials": carry["trials"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", nargs="+", default=["AAPL", "GOOG", "IBM", "MSFT"])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    budget = {"tune__n_trials": args.trials, "tune__max_epochs": args.epochs}
    data = {t: sample_features(t) for t in args.tickers}
    bars = {t: b for t, (b, _) in data.items()}
    pooled = pd.concat([f.assign(ticker=t) for t, (_, f) in data.items()], ignore_index=True)
    out: dict[str, Any] = {"tickers": args.tickers, "trials": args.trials, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        out["universe"] = train(Path(tmp) / "universe", "universe", pooled, bars, budget)
        out["per_ticker"] = {
            t: train(Path(tmp) / t, t, f, {t: bars[t]}, {**budget, "model__scope": "ticker"})
            for t, (_, f) in data.items()
        }
    out["per_ticker_total_seconds"] = round(
        sum(r["seconds"] for r in out["per_ticker"].values()), 1
    )
    out["ratio_per_ticker_to_universe"] = round(
        out["per_ticker_total_seconds"] / out["universe"]["seconds"], 2
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
