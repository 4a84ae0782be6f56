"""One model for the whole universe (`model.scope: universe`) or one per ticker (`ticker`).

Volatility behaves much alike across stocks, and pooled estimation beats asset-by-asset
models out of sample (Bollerslev et al., "Risk Everywhere", 2018): the universe model is
one network trained on windows of every configured ticker, each ticker split by time on
its own, the scaler and the HAR base fitted on every ticker's training rows. Its inputs
are scale-free, so it forecasts any ticker from that ticker's recent bars, one it has
never seen too. The model half of a run (tune ... promote) then runs once, on the pooled
features, under the model key `universe`; the data half and the forecast stay per ticker.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from pipeline.carry import Carry
from pipeline.config import Config

UNIVERSE = "universe"  # the model key (and registered-model suffix) of the universe model


def model_key(cfg: Config, ticker: str) -> str:
    """Whose model serves `ticker`: the universe's, or the ticker's own."""
    return UNIVERSE if cfg.model.scope == UNIVERSE else ticker


def is_pooled(feats: pd.DataFrame) -> bool:
    return "ticker" in feats.columns


def model_carries(cfg: Config, data: list[Carry]) -> list[Carry]:
    """The carries the model half runs on: one per ticker, or one pooled carry."""
    if cfg.model.scope != UNIVERSE:
        return flagged(data)
    return [pool(cfg, data)]


def flagged(data: list[Carry]) -> list[Carry]:
    """Per-ticker models: a retrain on evidence refits the flagged tickers' models only
    (the weekly one, or evidence naming no ticker here, runs every ticker)."""
    plan = (data[0].get("retrain") or {}) if data else {}
    reasons = plan.get("reasons") or {}
    chosen = [c for c in data if c["ticker"] in reasons]
    return chosen if plan.get("trigger") == "evidence" and chosen else data


def pool(cfg: Config, data: list[Carry]) -> Carry:
    """Every member's features (each with its own chronological split) in one frame, with
    a ticker column, under state/features/universe/<day>/."""
    day = dt.date.fromisoformat(data[0]["day"])
    members = [c["ticker"] for c in data]
    frames = [pd.read_parquet(c["features_path"]).assign(ticker=c["ticker"]) for c in data]
    feats = pd.concat(frames, ignore_index=True)
    feats["split"] = common_splits(feats, cfg.features.val_fraction, cfg.features.test_fraction)
    path = cfg.layout.features_path(UNIVERSE, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    feats.to_parquet(path, index=False)
    splits = {c["ticker"]: c.get("splits", {}) for c in data}
    (path.parent / "meta.json").write_text(
        json.dumps({"members": members, "day": day.isoformat(), "splits": splits}, indent=2)
    )
    validation = {
        "suite": data[0]["validation"].get("suite"),
        "passed": all(c["validation"].get("passed") for c in data),
        "checked": sum(int(c["validation"].get("checked", 0)) for c in data),
        "rows": sum(int(c["validation"].get("rows", 0)) for c in data),
        "members": members,
    }
    return {
        "ticker": UNIVERSE,
        "day": day.isoformat(),
        "pipeline_run_id": data[0]["pipeline_run_id"],
        "features_path": str(path),
        "splits": splits,
        "validation": validation,
        **({"retrain": data[0]["retrain"]} if "retrain" in data[0] else {}),
    }


def common_splits(feats: pd.DataFrame, val_fraction: float, test_fraction: float) -> pd.Series:
    """train | val | test by calendar, the same cut-off dates for every ticker (from the
    union of their labelled days): split per ticker, a ticker with a shorter history would
    validate or train on days that are another ticker's test days, and the model would
    be scored on sessions whose cross-section it had seen."""
    labelled = feats["target"].notna()
    days = np.unique(feats.loc[labelled, "Date"].to_numpy())
    n_test = max(1, round(len(days) * test_fraction))
    n_val = max(1, round(len(days) * val_fraction))
    if len(days) - n_test - n_val < 1:
        raise ValueError(f"{len(days)} labelled days are too few for the val/test fractions")
    val_start, test_start = days[len(days) - n_test - n_val], days[len(days) - n_test]
    date = feats["Date"].to_numpy()
    split = np.where(date >= test_start, "test", np.where(date >= val_start, "val", "train"))
    return pd.Series(np.where(labelled, split, "live"), index=feats.index, name="split")


def member_bars(cfg: Config, feats: pd.DataFrame, day: dt.date) -> dict[str, pd.DataFrame]:
    """Each member's curated bars as a run on `day` sees them, in the pooled frame's order."""
    from pipeline.data import store

    tickers = list(dict.fromkeys(feats["ticker"])) if is_pooled(feats) else []
    return {t: store.read_adjusted(cfg, t, until=day) for t in tickers}


def members(feats: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A pooled frame's per-ticker features (without the ticker column), in its order."""
    return {
        str(t): f.drop(columns="ticker").reset_index(drop=True)
        for t, f in feats.groupby("ticker", sort=False)
    }


def fingerprint_input(bars: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The members' bars as one frame (for the data fingerprint): ticker, then bars."""
    return pd.concat([b.assign(ticker=t) for t, b in bars.items()], ignore_index=True)
