import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from pipeline.data import features, store
from pipeline.data.bars import NUMBER_COLUMNS
from pipeline.data.features import (
    FEATURES,
    TARGET,
    Scaler,
    assign_splits,
    feature_matrix,
    make_features,
    make_windows,
    prepare,
)
from tests.helpers import random_walk_bars


def test_features_are_scale_free() -> None:
    bars = random_walk_bars()
    scaled = bars.assign(**{c: bars[c] * 1000 for c in ["Open", "High", "Low", "Close"]})
    a, b = make_features(bars, 5, 5), make_features(scaled, 5, 5)
    np.testing.assert_allclose(a[FEATURES], b[FEATURES], atol=1e-12)


def test_no_look_ahead_changing_the_future_leaves_the_past() -> None:
    bars = random_walk_bars()
    future = bars.copy()
    future.loc[40:, ["Open", "High", "Low", "Close"]] *= 1.5
    a, b = make_features(bars, 5, 5), make_features(future, 5, 5)
    cut = a.index[a["Date"] < bars["Date"][40]]
    pd.testing.assert_frame_equal(a.loc[cut, FEATURES], b.loc[cut, FEATURES])
    # the target is tomorrow's return: only the row before the change sees it
    assert not np.isclose(a.loc[cut[-1], TARGET], b.loc[cut[-1], TARGET])


def test_target_is_next_day_log_return() -> None:
    bars = random_walk_bars()
    feats = make_features(bars, 5, 5)
    row = feats.iloc[10]
    i = bars.index[bars["Date"] == row["Date"]][0]
    assert np.isclose(row[TARGET], np.log(bars["Close"][i + 1] / bars["Close"][i]))
    assert np.isnan(feats[TARGET].iloc[-1])


def test_splits_are_chronological_and_leave_a_live_row() -> None:
    feats = make_features(random_walk_bars(100), 5, 5)
    split = assign_splits(feats, 0.2, 0.2)
    order = {"train": 0, "val": 1, "test": 2, "live": 3}
    assert split.map(order).is_monotonic_increasing
    assert split.iloc[-1] == "live" and (split == "live").sum() == 1
    assert (split == "test").sum() == round((len(feats) - 1) * 0.2)


def test_scaler_is_fitted_on_train_rows_only() -> None:
    feats = make_features(random_walk_bars(100), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    feats.loc[feats.split == "test", "range"] += 10.0  # a regime only the test days see
    prep = prepare(feats, window=4)
    train = feats[feats.split == "train"]
    np.testing.assert_allclose(prep.x_scaler.mean, train[FEATURES].mean().to_numpy())
    np.testing.assert_allclose(prep.y_scaler.mean, [train[TARGET].mean()])


def test_labels_carry_the_base_scale_in_label_units() -> None:
    feats = make_features(random_walk_bars(100), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=4, base="trailing")
    rows = np.flatnonzero(feats["split"] == "test")
    _, y = prep.windows("test")
    assert y.shape == (len(rows), 2)
    np.testing.assert_allclose(
        y[:, 0] * prep.y_scaler.scale[0] + prep.y_scaler.mean[0],
        feats[TARGET].iloc[rows],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        y[:, 1] * prep.y_scaler.scale[0], feats["volatility"].iloc[rows], rtol=1e-5
    )


def test_the_har_base_is_the_har_baseline_fitted_on_the_train_rows() -> None:
    """The base an untrained net forecasts is pipeline.evaluation.baselines' HAR, fitted on the
    training rows only, evaluated on each row's own range features."""
    from pipeline.evaluation import baselines

    bars = random_walk_bars(300)
    feats = make_features(bars, 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=4, base="har")
    v = baselines.range_variance(*(bars[c].to_numpy() for c in ["Open", "High", "Low", "Close"]))
    r_next = np.append(np.diff(np.log(bars["Close"].to_numpy())), np.nan)
    at = pd.Index(bars["Date"]).get_indexer(feats["Date"])
    har = baselines.har_fit(v, r_next, at[feats["split"] == "train"])
    np.testing.assert_allclose(prep.base["coef"], har.coef, rtol=1e-9)
    assert prep.base["smearing"] == pytest.approx(har.smearing)
    rows = np.flatnonzero(feats["split"] == "test")
    np.testing.assert_allclose(
        prep.windows("test")[1][:, 1] * prep.y_scaler.scale[0],
        baselines.har_sigma(har, v)[at[rows]],
        rtol=1e-5,
    )


def test_a_pooled_frame_gets_one_scaler_and_windows_within_each_ticker() -> None:
    one = make_features(random_walk_bars(120, seed=1), 5, 5).assign(ticker="A")
    two = make_features(random_walk_bars(90, seed=2), 5, 5).assign(ticker="B")
    for f in (one, two):
        f["split"] = assign_splits(f, 0.2, 0.2)
    pooled = pd.concat([one, two], ignore_index=True)
    prep = prepare(pooled, window=4)
    train = pooled[pooled["split"] == "train"]
    np.testing.assert_allclose(prep.x_scaler.mean, train[FEATURES].mean().to_numpy())
    singles = [prepare(f, window=4) for f in (one, two)]
    for split in ("train", "val", "test"):  # as many windows as the two series alone
        assert prep.count(split) == sum(p.count(split) for p in singles)
        x, y = prep.windows(split)
        assert x.shape == (prep.count(split), 4, len(FEATURES)) and len(y) == len(x)
    # B's first training window starts on B's own rows: 3 fewer windows than B's rows
    assert (
        prep.count("train")
        == (one["split"] == "train").sum() + (two["split"] == "train").sum() - 2 * 3
    )
    # no window reaches back into the other ticker's rows, and none ends off its split
    start_b = len(one)
    for split, rows in prep.rows.items():
        assert (pooled["split"].to_numpy()[rows] == split).all()
        first = np.where(rows >= start_b, start_b, 0)
        assert (rows - 3 >= first).all()


def test_windows_are_gathered_from_the_scaled_rows_on_demand() -> None:
    """prepare keeps rows, not windows: a window is the scaled rows ending on its row,
    labelled with that row's label, as make_windows builds them."""
    feats = make_features(random_walk_bars(100), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=4)
    assert prep.inputs.dtype == np.float32 and prep.inputs.shape == (len(feats), len(FEATURES))
    scaled = prep.x_scaler.transform(feats[FEATURES].to_numpy())
    some = prep.rows["val"][[0, 2]]
    x, y = prep.windows(some)
    np.testing.assert_allclose(x[1], scaled[some[1] - 3 : some[1] + 1], rtol=1e-6)
    np.testing.assert_array_equal(y, prep.labels[some])
    x_all, _ = prep.windows("val")
    np.testing.assert_array_equal(x_all[[0, 2]], x)


def test_windows_end_on_the_target_row() -> None:
    x = np.arange(20, dtype=float).reshape(10, 2)
    y = np.arange(10, dtype=float)
    xw, yw = make_windows(x, y, 3, np.array([1, 2, 9]))
    assert xw.shape == (2, 3, 2) and list(yw) == [2, 9]  # row 1 lacks a full window
    np.testing.assert_array_equal(xw[1, :, 0], [14, 16, 18])


def test_scaler_round_trip_and_constant_column() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = Scaler.fit(x)
    np.testing.assert_allclose(s.inverse(s.transform(x)), x)
    assert s.scale[1] == 1.0


def test_run_writes_the_days_features_and_their_spans(make_cfg, sample_bars: pd.DataFrame) -> None:
    cfg = make_cfg(features__volatility_window=5, features__volume_window=5)
    day = dt.date(2010, 1, 8)
    store.publish_curated(cfg, "GOOG", sample_bars, pd.DataFrame(), day)
    out = features.run(cfg, "GOOG", day)
    assert out["features_path"] == str(cfg.layout.features_path("GOOG", day))
    feats = pd.read_parquet(out["features_path"])
    assert feats["Date"].max() == pd.Timestamp(day)  # nothing after the run day
    assert list(feats["split"].unique()) == ["train", "val", "test", "live"]
    spans = out["splits"]
    assert sum(s["rows"] for s in spans.values()) == len(feats)
    assert spans["live"] == {"rows": 1, "first": "2010-01-08", "last": "2010-01-08"}
    assert spans["train"]["last"] < spans["val"]["first"] <= spans["val"]["last"]
    meta = json.loads((cfg.layout.features_dir("GOOG", day) / "meta.json").read_text())
    assert meta["features"] == FEATURES and meta["splits"] == spans


@pytest.mark.parametrize(("window", "vol", "volume"), [(5, 5, 5), (60, 20, 20), (10, 3, 30)])
def test_serving_features_on_the_last_rows_equal_training_features(
    window: int, vol: int, volume: int, sample_bars: pd.DataFrame
) -> None:
    """The pyfunc computes features on only window + warm-up rows; they must be the
    numbers training computed on the whole series for those days."""
    from pipeline.forecasting.spec import min_rows

    bars = sample_bars.tail(400).reset_index(drop=True)
    spec = {"window": window, "vol_window": vol, "volume_window": volume, "har_window": 22}
    needed = min_rows(spec)
    tail = bars.tail(needed)
    served, _ = feature_matrix(
        tail["Date"].to_numpy(), tail[NUMBER_COLUMNS].to_numpy(), vol, volume
    )
    trained = make_features(bars, vol, volume)[FEATURES].to_numpy()
    np.testing.assert_array_equal(served[-window:], trained[-window:])
    assert not np.isnan(served[-window:]).any()


def test_the_rolling_windows_are_pandas_numbers() -> None:
    """The features' own rolling mean and std (few NumPy calls: the serving path) give
    what pandas' rolling gives, and the mean alone is the pair's mean, bit for bit."""
    x = np.random.default_rng(0).standard_normal(300)
    for window in (1, 5, 22, 300, 301):
        with np.errstate(invalid="ignore", divide="ignore"):  # a std over one value
            mean, std = features.rolling_mean_std(x, window)
        np.testing.assert_array_equal(features.rolling_mean(x, window), mean)
        rolling = pd.Series(x).rolling(window)
        np.testing.assert_allclose(mean, rolling.mean(), rtol=1e-12, atol=1e-15)
        if window > 1:
            np.testing.assert_allclose(std, rolling.std(), rtol=1e-10)
