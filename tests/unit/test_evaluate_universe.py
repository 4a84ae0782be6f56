"""The universe model's evaluation at any number of tickers: batched forecasts, members
without enough history left out, per-ticker results in a table artifact, pooled metrics."""

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipeline import tracking
from pipeline.config import Config, throwaway_config
from pipeline.data import store
from pipeline.data.features import FEATURES, assign_splits, make_features, prepare
from pipeline.data.universe import common_splits
from pipeline.evaluation import evaluate_run
from pipeline.evaluation import evaluate_universe as ev
from pipeline.forecasting.forecaster import PriceForecaster
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.forecasting.spec import preprocessing_spec
from tests.helpers import random_walk_bars

START = {"AAA": "2019-01-01", "BBB": "2019-03-01", "NEW": "2020-03-02"}
ROWS = {"AAA": 420, "BBB": 380, "NEW": 100}  # NEW: listed weeks before the test days


@pytest.fixture(scope="module")
def members() -> dict[str, pd.DataFrame]:
    return {t: random_walk_bars(ROWS[t], seed=i, start=START[t]) for i, t in enumerate(START)}


@pytest.fixture(scope="module")
def pooled(members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [make_features(b, 5, 5).assign(ticker=t) for t, b in members.items()]
    feats = pd.concat(frames, ignore_index=True)
    feats["split"] = common_splits(feats, 0.15, 0.15)
    return feats


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, members) -> PriceForecaster:
    """A tiny untrained network (zero head) with scalers from one member's bars."""
    feats = make_features(members["AAA"], 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5)
    tmp = tmp_path_factory.mktemp("universe-model")
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5)
    net = build_model(params, len(FEATURES))
    net.layers[-1].set_weights([np.full((4, 2), 0.1), np.array([0.0, 0.5])])  # not constant
    net.save(tmp / "network.keras")
    spec = preprocessing_spec(5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 5000, None, prep.base)
    (tmp / "preprocessing.json").write_text(json.dumps(spec))
    found = PriceForecaster()
    found.load(tmp / "network.keras", tmp / "preprocessing.json")
    return found


def test_forecasts_of_many_tickers_in_one_pass_are_each_tickers_own(model, members) -> None:
    every = model.forecast_many(members)
    for ticker, bars in members.items():
        alone = model.forecast_all(bars)
        pd.testing.assert_frame_equal(every[ticker], alone, rtol=1e-5)
    since = pd.Timestamp("2020-06-01")
    later = model.forecast_many(members, {"AAA": since})
    assert later["AAA"]["as_of"].min() >= since and len(later["BBB"]) == len(every["BBB"])
    tail = every["AAA"][every["AAA"]["as_of"] >= since].reset_index(drop=True)
    np.testing.assert_allclose(later["AAA"]["scale"], tail["scale"], rtol=1e-5)
    np.testing.assert_allclose(later["AAA"]["forecast_close"], tail["forecast_close"], rtol=1e-6)


def test_a_member_without_the_history_for_its_baselines_is_left_out(pooled) -> None:
    members = {t: f for t, f in pooled.groupby("ticker")}
    assert ev.left_out(members["AAA"]) is None
    assert "fewer than the 250" in str(ev.left_out(members["NEW"]))
    assert ev.left_out(members["AAA"].assign(split="train")) == "no test day"


def _store(tmp_path: Path, members: dict[str, pd.DataFrame]) -> tuple[Config, dt.date]:
    cfg = throwaway_config(tmp_path, model__scope="universe")
    day = max(b["Date"].iloc[-1] for b in members.values()).date()
    for ticker, bars in members.items():
        store.publish_curated(cfg, ticker, bars, pd.DataFrame(), day)
    return cfg, day


def test_per_ticker_results_go_to_a_table_and_the_pooled_ones_to_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model, members, pooled
) -> None:
    import mlflow

    cfg, day = _store(tmp_path, members)
    loaded = SimpleNamespace(unwrap_python_model=lambda: model)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda uri: loaded)
    run_id = tracking.parent_run(cfg, "universe", day, "test-universe-evaluation")

    result = evaluate_run.run_pooled(cfg, pooled, day, "models:/m/1", "models:/m/0", run_id)

    assert set(result["tickers"]) == {"AAA", "BBB"} and result["tickers_scored"] == 2
    assert list(result["tickers_left_out"]) == ["NEW"]
    assert set(result["tickers"]["AAA"]) == set(ev.PER_TICKER)  # a few numbers each
    assert result["production_mae"] == pytest.approx(result["model_mae"])  # the same model
    assert result["test_days"] == sum(r["test_days"] for r in result["tickers"].values())
    mc = tracking.client(cfg)
    metrics = mc.get_run(run_id).data.metrics
    assert "test_model_interval_score_80" in metrics
    assert not [k for k in metrics if "AAA" in k or "BBB" in k]  # no metric per ticker
    table = pd.read_csv(mc.download_artifacts(run_id, ev.PER_TICKER_ARTIFACT, str(tmp_path)))
    assert list(table["ticker"]) == ["AAA", "BBB", "NEW"]
    assert "fewer than" in table.loc[2, "left_out"] and np.isnan(table.loc[2, "model_mase"])
    scored = table.set_index("ticker").loc["AAA"]
    assert scored["model_interval_score_80"] == pytest.approx(
        result["tickers"]["AAA"]["model_interval_score_80"]
    )
    days = pd.read_parquet(mc.download_artifacts(run_id, ev.SESSIONS_ARTIFACT, str(tmp_path)))
    assert len(days) == result["test_days"] and set(days["ticker"]) == {"AAA", "BBB"}
    assert isinstance(days["as_of"].iloc[0], str)
    evaluate_run.run_pooled(cfg, pooled, day, "models:/m/1", None, run_id)  # a retry replaces them
    again = pd.read_parquet(mc.download_artifacts(run_id, ev.SESSIONS_ARTIFACT, str(tmp_path)))
    assert len(again) == len(days)
