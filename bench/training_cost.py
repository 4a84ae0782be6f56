"""Training cost: one universe model for every ticker vs one model per ticker; and the
retrain's model half on a large universe.

    .venv/bin/python -m bench.training_cost [--tickers AAPL GOOG IBM MSFT] [--trials 4]
    .venv/bin/python -m bench.training_cost --universe sp500 [--refit-only PARAMS_JSON]

Default mode: the pipeline's own tune -> best -> train steps on throw-away stores, with
the same budget (trials, epochs) per study: once on the pooled features of every ticker
(the universe model), then once per ticker. Each ticker's features are the daily run's
for the last sample day. Prints one JSON object: wall seconds and trials of each.

`--universe sp500`: the 394 S&P 500 stocks of ../shared/data/sp500 (or the embedded
copy, or `--data DIR`), rows with a missing price, High below Low, or Open or Close
outside [Low, High] dropped (the data's real defects), featurised per ticker and pooled
on one calendar as the retrain pools them (universe.common_splits). Then the retrain's
model half with pipeline.yaml's tuning budget, timed step by step: the weekly tune (tune,
best, train, evaluate), its model registered and put in production, then a refit with
its parameters (train, evaluate: production's forecasts are scored too). Prints one JSON
object: each step's seconds and totals, the chosen parameters, windows per epoch, the
train, validation and test windows, the pooled scores, the tickers left out and how many
the gate's ticker rule would refuse. `--refit-only '{"units": 128, ...}' --epochs N` times
only a refit with those parameters for N epochs, without production (the dearest point of
the search space: units 128, layers 2, window 60, batch 32).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import pandas as pd

from bench.common import sample_features
from pipeline.carry import Carry
from pipeline.config import PROJECT_ROOT, throwaway_config
from pipeline.data import store
from pipeline.orchestration import steps

SHARED_SP500 = PROJECT_ROOT.parent / "shared" / "data" / "sp500"
EMBEDDED_SP500 = PROJECT_ROOT / "pipeline" / "data" / "samples" / "sp500"


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


def clean_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars without the vendor's defect rows: a missing price, High below Low, Open or
    Close outside [Low, High]."""
    o, h, lo, c = (bars[k] for k in ("Open", "High", "Low", "Close"))
    ok = bars[["Open", "High", "Low", "Close"]].notna().all(axis=1) & (h >= lo)
    ok &= o.between(lo, h) & c.between(lo, h)
    return bars[ok].reset_index(drop=True)


def universe_features(folder: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every CSV's cleaned bars, and their features pooled as the retrain pools them."""
    from pipeline.config import load_config
    from pipeline.data.bars import read_bars_csv
    from pipeline.data.features import make_features
    from pipeline.data.universe import common_splits

    fc = load_config(environ={}).features
    files = sorted(folder.glob("*.csv*"))  # the shared CSVs, or the embedded .csv.gz
    bars = {
        p.name.removesuffix(".gz").removesuffix(".csv"): clean_bars(read_bars_csv(p)) for p in files
    }
    frames = [
        make_features(b, fc.volatility_window, fc.volume_window).assign(ticker=t)
        for t, b in bars.items()
    ]
    feats = pd.concat(frames, ignore_index=True)
    feats["split"] = common_splits(feats, fc.val_fraction, fc.test_fraction)
    return feats, bars


def windows(cfg: Any, feats: pd.DataFrame, window: int) -> dict[str, int]:
    from pipeline.data.features import prepare

    prep = prepare(feats, window)
    train, val = prep.count("train"), prep.count("val")
    return {
        "windows_per_epoch": min(cfg.tune.windows_per_epoch, train),
        "refit_windows_per_epoch": min(cfg.tune.windows_per_epoch, train + val),
        "train_windows": train,
        "val_windows_sampled": min(cfg.tune.val_windows, val),
        "val_windows": val,
        "test_windows": prep.count("test"),
    }


def timed_steps(cfg: Any, carry: dict[str, Any], names: list[str]) -> dict[str, float]:
    seconds = {}
    for name in names:
        start = time.perf_counter()
        carry.update(steps.advance(cfg, name, cast(Carry, carry)))
        seconds[name] = round(time.perf_counter() - start, 1)
    return seconds


def make_production(cfg: Any, carry: dict[str, Any]) -> None:
    """Register the weekly retrain's model and point `production` at it (no gate: the
    refit after it is to be timed as it runs in service, against a production model)."""
    from pipeline import tracking
    from pipeline.lifecycle import registry

    carry.update(steps.advance(cfg, "register", cast(Carry, carry)))
    name = registry.model_name(cfg, "universe")
    tracking.client(cfg).set_registered_model_alias(name, registry.PRODUCTION, carry["version"])


def scores(cfg: Any, ev: dict[str, Any]) -> dict[str, Any]:
    """The pooled evidence in brief, and how many tickers the gate's ticker rule refuses."""
    pooled: dict[str, Any] = {
        f"{who}_interval_score_80": round(ev[f"{who}_interval_score_80"], 4)
        for who in ("model", "naive", "ewma", "har", "garch")
    }
    pooled["model_coverage_80"] = round(ev["model_coverage_80"], 4)
    tolerance = 1 + cfg.registry.ticker_tolerance
    worse = [
        t
        for t, s in ev["tickers"].items()
        if s["model_interval_score_80"] > s["naive_interval_score_80"] * tolerance
    ]
    return {
        "test_sessions": ev["test_days"],
        "tickers_scored": ev.get("tickers_scored"),
        "tickers_left_out": ev.get("tickers_left_out", {}),
        "pooled": pooled,
        "tickers_worse_than_naive_beyond_ticker_tolerance": len(worse),
        "carry_evaluation_bytes": len(json.dumps(ev, default=str)),
    }


def large_universe(folder: Path, refit_only: dict[str, Any] | None, epochs: int) -> dict[str, Any]:
    """The retrain's model half on every stock in `folder`, timed step by step: the weekly
    tune (tune, best, train, evaluate), then a refit with its parameters (train, evaluate)
    with the weekly model in production (its forecasts are scored too)."""
    started = time.perf_counter()
    feats, bars = universe_features(folder)
    out: dict[str, Any] = {
        "universe": str(folder),
        "tickers": len(bars),
        "feature_rows": len(feats),
        "features_seconds": round(time.perf_counter() - started, 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = throwaway_config(root)  # pipeline.yaml's budget: `make run`'s
        keys = ("n_trials", "timeout_s", "max_epochs", "patience", "windows_per_epoch")
        out["budget"] = {k: getattr(cfg.tune, k) for k in (*keys, "val_windows")}
        day = max(b["Date"].iloc[-1] for b in bars.values()).date()
        for ticker, b in bars.items():
            store.publish_curated(cfg, ticker, b, pd.DataFrame(), day)
        path = root / "universe.parquet"
        feats.to_parquet(path, index=False)
        carry: dict[str, Any] = dict(steps.start("universe", day, "bench-weekly"))
        carry["features_path"], carry["validation"] = str(path), {}
        if refit_only is None:
            weekly = timed_steps(cfg, carry, ["tune", "best", "train", "evaluate"])
            out["weekly"] = {
                "seconds": weekly,
                "total_seconds": round(sum(weekly.values()), 1),
                "trials": carry["trials"],
                "params": carry["best_params"],
                "epochs": carry["best_epoch"],
                **scores(cfg, carry["evaluation"]),
            }
            make_production(cfg, carry)
            params, epochs = carry["best_params"], carry["best_epoch"]
        else:
            params = refit_only
        from pipeline import tracking

        refit: dict[str, Any] = dict(steps.start("universe", day, "bench-refit"))
        refit["features_path"], refit["validation"] = str(path), {}
        refit["parent_run_id"] = tracking.parent_run(cfg, "universe", day, "bench-refit")
        refit.update(best_params=params, best_epoch=epochs)
        seconds = timed_steps(cfg, refit, ["train", "evaluate"])
        out["refit"] = {
            "seconds": seconds,
            "total_seconds": round(sum(seconds.values()), 1),
            "against_production": refit_only is None,
            "params": params,
            "epochs": epochs,
            **scores(cfg, refit["evaluation"]),
        }
        out.update(windows(cfg, feats, int(params["window"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", nargs="+", default=["AAPL", "GOOG", "IBM", "MSFT"])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--universe", choices=["sp500"], default=None)
    parser.add_argument("--data", type=Path, default=None, help="a folder of <TICKER>.csv")
    parser.add_argument("--refit-only", type=json.loads, default=None, metavar="PARAMS_JSON")
    args = parser.parse_args()
    if args.universe:
        folder = args.data or (SHARED_SP500 if SHARED_SP500.is_dir() else EMBEDDED_SP500)
        print(json.dumps(large_universe(folder, args.refit_only, args.epochs), indent=2))
        return
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
