"""The universe model's plumbing: pooling, the model key, and a cold-start forecast."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config, throwaway_env
from pipeline.data import universe
from pipeline.data.features import assign_splits, make_features
from pipeline.evaluation import backtest, backtest_series
from pipeline.forecasting.model import LSTMParams
from pipeline.lifecycle import registry
from tests.helpers import random_walk_bars

DAY = dt.date(2021, 6, 1)


def _member(make_cfg, ticker: str, seed: int) -> dict:
    cfg = make_cfg(model__scope="universe")
    feats = make_features(random_walk_bars(200, seed=seed), 5, 5)
    feats["split"] = assign_splits(feats, 0.15, 0.15)
    path = cfg.layout.features_path(ticker, DAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    feats.to_parquet(path)
    return {
        "ticker": ticker,
        "day": DAY.isoformat(),
        "pipeline_run_id": "run-1",
        "features_path": str(path),
        "validation": {"suite": "ohlcv_bars.json", "passed": True, "checked": 27, "rows": 200},
    }


def test_the_universe_pools_every_members_own_split(make_cfg) -> None:
    cfg = make_cfg(model__scope="universe")
    data = [_member(make_cfg, "AAA", 1), _member(make_cfg, "BBB", 2)]
    [pooled] = universe.model_carries(cfg, data)
    assert pooled["ticker"] == "universe" and pooled["validation"]["members"] == ["AAA", "BBB"]
    feats = pd.read_parquet(pooled["features_path"])
    for c in data:  # each member's rows, with the split it was given on its own dates
        own = pd.read_parquet(c["features_path"])
        mine = feats[feats["ticker"] == c["ticker"]].drop(columns="ticker")
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), own)
    # no test day of any member is a training day: splits never mix within a ticker
    for _, member in feats.groupby("ticker"):
        last_train = member.loc[member["split"] == "train", "Date"].max()
        assert last_train < member.loc[member["split"] == "test", "Date"].min()


def test_per_ticker_scope_keeps_a_model_per_ticker(make_cfg) -> None:
    cfg = make_cfg()
    data = [_member(make_cfg, "AAA", 1)]
    assert universe.model_carries(cfg, data) == data
    assert registry.model_name(cfg, "AAA") == "price_lstm_AAA"


def test_an_evidence_retrain_refits_only_the_flagged_tickers_models(make_cfg) -> None:
    cfg = make_cfg()
    data = [_member(make_cfg, "AAA", 1), _member(make_cfg, "BBB", 2)]

    def planned(trigger: str, reasons: dict) -> list:
        carries = [{**c, "retrain": {"trigger": trigger, "reasons": reasons}} for c in data]
        return [c["ticker"] for c in universe.model_carries(cfg, carries)]

    assert planned("evidence", {"BBB": ["coverage drift"]}) == ["BBB"]
    assert planned("weekly", {}) == ["AAA", "BBB"]
    assert planned("evidence", {"universe": ["no production model"]}) == ["AAA", "BBB"]


def test_universe_is_not_a_ticker(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names the universe model"):
        load_config(environ={**throwaway_env(tmp_path), "PIPELINE__TICKERS": "[universe]"})


def test_a_ticker_never_trained_on_is_forecast_the_same_way(tmp_path: Path) -> None:
    """Cold start: trained on GOOG only, the network forecasts MSFT from MSFT's own bars."""
    cfg = load_config(environ=throwaway_env(tmp_path))
    goog = backtest_series.load_series(cfg, "GOOG", dt.date(2013, 3, 1))
    msft = backtest_series.load_series(cfg, "MSFT", dt.date(2013, 3, 1))
    blocks = []
    for s in (goog, msft):
        a = int(np.searchsorted(s.feats["Date"].to_numpy(), np.datetime64("2012-06-01")))
        blocks.append((s, a, a + 20))
    params = LSTMParams(units=4, layers=1, window=5, batch_size=256)
    out = backtest.pooled_forecasts(blocks, params, 1, 0, "har", frozenset({"MSFT"}))
    assert set(out) == {"GOOG", "MSFT"}
    for forecast in out.values():
        assert len(forecast.scale) == 20 and np.isfinite(forecast.scale).all()
        assert (forecast.scale > 0).all()
    assert out["MSFT"].last_close[0] == pytest.approx(msft.feats["Close"].iloc[blocks[1][1]])


def test_pooled_evidence_weighs_tickers_by_percent_of_the_close() -> None:
    """A $10 and a $1,000 stock with the same relative errors count alike; the gate reads
    the same keys as a per-ticker evaluation, and each ticker's scores beside them."""
    from pipeline.evaluation.evaluate_universe import pooled_evidence

    rng = np.random.default_rng(5)
    frames = []
    for ticker, price in (("CHEAP", 10.0), ("DEAR", 1000.0)):
        n = 120
        last = np.full(n, price)
        actual = last * np.exp(rng.normal(0, 0.02, n))
        day = pd.bdate_range("2020-01-01", periods=n)
        cols = {"ticker": ticker, "as_of": day, "for_date": day + pd.offsets.BDay(1)}
        cols.update(last_close=last, actual=actual, model_forecast_close=last * 1.001)
        for f, width in (
            ("model", 0.025),
            ("naive", 0.03),
            ("ewma", 0.03),
            ("har", 0.027),
            ("garch", 0.028),
        ):
            for pct, z in ((80, 1.28), (95, 1.96)):
                cols[f"{f}_lower_{pct}"] = last * np.exp(-z * width)
                cols[f"{f}_upper_{pct}"] = last * np.exp(z * width)
            cols[f"{f}_crps"] = np.full(n, width)
            cols[f"{f}_qlike"] = np.full(n, width)
        frames.append(pd.DataFrame(cols))
    sessions = pd.concat(frames, ignore_index=True)
    per_ticker = {"CHEAP": {"model_interval_score_80": 0.5}, "DEAR": {"model_mase": 1.0}}
    ev = pooled_evidence(sessions, per_ticker)
    assert ev["test_days"] == 240 and ev["best_baseline"] == "har"
    want = (
        np.mean(
            np.abs(sessions["model_forecast_close"] - sessions["actual"])
            / 1.0
            / sessions["last_close"]
        )
        * 100
    )
    assert ev["model_mae"] == pytest.approx(want)
    assert ev["model_interval_score_80"] < ev["har_interval_score_80"]
    for key in (
        "interval_dm_pvalue",
        "interval_dm_har_pvalue",
        "dm_pvalue",
        "model_kupiec_pvalue_80",
        "model_directional_accuracy",
    ):
        assert 0 <= ev[key] <= 1, key
    assert ev["tickers"] == per_ticker


def test_the_pooled_split_is_one_calendar_for_every_ticker(make_cfg) -> None:
    """A ticker with a shorter history must not train or validate on days that are
    another ticker's test days: the pooled frame is cut on common dates."""
    cfg = make_cfg(model__scope="universe")
    long = _member(make_cfg, "LONG", 1)
    short = make_features(random_walk_bars(120, seed=3, start="2020-04-01"), 5, 5)
    short["split"] = assign_splits(short, 0.15, 0.15)
    path = cfg.layout.features_path("SHORT", DAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    short.to_parquet(path)
    [pooled] = universe.model_carries(
        cfg, [long, {**long, "ticker": "SHORT", "features_path": str(path)}]
    )
    feats = pd.read_parquet(pooled["features_path"])
    test_start = feats.loc[feats["split"] == "test", "Date"].min()
    seen = feats[feats["split"].isin(["train", "val"])]
    assert seen["Date"].max() < test_start  # no ticker's train/val day is anyone's test day
    for _, member in feats.groupby("ticker"):
        assert member.loc[member["split"] == "test", "Date"].min() == test_start
