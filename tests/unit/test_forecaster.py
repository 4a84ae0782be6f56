"""The logged pyfunc's own logic: request checks, its preprocessing spec, and its forecast."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.features import FEATURES, Scaler, assign_splits, make_features, prepare
from pipeline.forecaster import (
    OUTPUT_COLUMNS,
    BadInput,
    PriceForecaster,
    check_bars,
    min_rows,
    preprocessing_spec,
)
from pipeline.model import T_SCALE_PER_STD, LSTMParams, build_model


def _bars(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Date": [f"2020-01-{d:02d}" for d in range(1, n + 1)],
            "Open": 1.0,
            "High": 2.0,
            "Low": 0.5,
            "Close": 1.5,
            "Volume": 10.0,
        }
    )


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b.drop(columns="Close"), "missing column"),
        (lambda b: b.head(3), "needs at least 5"),
        (lambda b: b.assign(Close=[1.5, np.nan, 1.5, 1.5, 1.5, 1.5]), "Close must be a number"),
        (lambda b: b.assign(Open=["1", "x", "1", "1", "1", "1"]), "Open must be a number"),
        (lambda b: b.assign(Date=b["Date"][::-1].to_numpy()), "increasing order"),
        (lambda b: b.assign(Date=["2020-01-01"] * 6), "duplicate dates"),
        (lambda b: b.assign(Date="yesterday"), "YYYY-MM-DD"),
        (lambda b: b.assign(Low=-1.0), "prices must be > 0"),
    ],
)
def test_request_rows_are_checked(mangle, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        check_bars(mangle(_bars(6)), needed=5)
    assert len(check_bars(_bars(6), needed=5)) == 6


def test_request_rows_are_typed_and_capped() -> None:
    typed = check_bars(_bars(6).astype(str), needed=5)
    assert typed["Date"].dtype.kind == "M" and typed["Volume"].dtype == "float64"
    with pytest.raises(BadInput, match="at most 5 accepted"):
        check_bars(_bars(6), needed=5, max_rows=5)
    with pytest.raises(BadInput, match="table of daily bars"):
        check_bars([1, 2, 3], needed=1)  # type: ignore[arg-type]


def test_min_rows_is_window_plus_the_longer_warm_up() -> None:
    assert min_rows({"window": 10, "vol_window": 20, "volume_window": 5}) == 30
    assert min_rows({"window": "4", "vol_window": "3", "volume_window": "6"}) == 10


def test_preprocessing_spec_round_trips_the_scalers() -> None:
    x = Scaler.fit(np.array([[1.0, 10.0, 3.0], [3.0, 30.0, 3.0]]))
    y = Scaler.fit(np.array([[0.01], [-0.03]]))
    spec = json.loads(json.dumps(preprocessing_spec(5, 4, 3, x, y, "XNYS", 100)))
    assert spec["features"] == FEATURES and spec["calendar"] == "XNYS"
    assert (spec["window"], spec["vol_window"], spec["volume_window"], spec["max_rows"]) == (
        5,
        4,
        3,
        100,
    )
    back = Scaler(np.array(spec["x_mean"]), np.array(spec["x_scale"]))
    np.testing.assert_array_equal(back.mean, x.mean)
    np.testing.assert_array_equal(back.scale, x.scale)
    np.testing.assert_array_equal(spec["y_mean"], y.mean)
    np.testing.assert_array_equal(spec["y_scale"], y.scale)


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame):
    """An untrained tiny network (zero head: scaled output 0) with scalers from real bars."""
    feats = make_features(sample_bars.tail(120).reset_index(drop=True), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5)
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5)
    tmp = tmp_path_factory.mktemp("forecaster")
    build_model(params, len(FEATURES)).save(tmp / "network.keras")
    spec = preprocessing_spec(5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 50)
    (tmp / "preprocessing.json").write_text(json.dumps(spec))
    model = PriceForecaster()
    model.load(tmp / "network.keras", tmp / "preprocessing.json")
    return model, prep


def test_forecast_next_undoes_the_scaling_and_names_the_next_session(
    forecaster, sample_bars: pd.DataFrame
) -> None:
    model, prep = forecaster
    request = sample_bars.tail(12).assign(Date=lambda b: b["Date"].dt.strftime("%Y-%m-%d"))
    out = model.predict(None, request)
    assert list(out.columns) == OUTPUT_COLUMNS
    row = out.iloc[0]
    # a zero output is the training-mean return, unscaled
    assert row["forecast_return"] == pytest.approx(prep.y_scaler.mean[0])
    assert row["forecast_close"] == pytest.approx(806.19 * np.exp(prep.y_scaler.mean[0]))
    assert (row["as_of"], row["last_close"]) == ("2013-03-01", 806.19)
    assert row["for_date"] == "2013-03-04"  # Friday -> the next XNYS session, Monday
    assert row["model_version"] == ""  # set by the alias follower when serving
    # an untrained head: the scale is the base scale, the trailing volatility of the last
    # bar; intervals are close * exp(loc -+ z * scale)
    vol = make_features(sample_bars.tail(12).reset_index(drop=True), 5, 5)["volatility"].iloc[-1]
    std = vol * T_SCALE_PER_STD  # the Student-t(5) scale whose std is the trailing one
    assert row["scale"] == pytest.approx(std, rel=1e-5)
    for level, z in ((80, 1.4758840), (95, 2.5705818)):  # t(5) quantiles
        assert row[f"lower_{level}"] == pytest.approx(
            806.19 * np.exp(prep.y_scaler.mean[0] - z * std), rel=1e-5
        )
        assert row[f"upper_{level}"] == pytest.approx(
            806.19 * np.exp(prep.y_scaler.mean[0] + z * std), rel=1e-5
        )
    assert row["lower_95"] < row["lower_80"] < row["forecast_close"] < row["upper_80"]
    with pytest.raises(BadInput, match="needs at least 10"):
        model.predict(None, request.tail(9))
    with pytest.raises(BadInput, match="at most 50"):
        model.predict(None, sample_bars.tail(51))


def test_forecast_all_makes_one_forecast_per_full_window(
    forecaster, sample_bars: pd.DataFrame
) -> None:
    model, prep = forecaster
    bars = sample_bars.tail(30).reset_index(drop=True)
    out = model.forecast_all(bars)
    feats = make_features(bars, 5, 5)
    assert len(out) == len(feats) - 5 + 1
    assert list(out["as_of"]) == list(feats["Date"][4:])
    np.testing.assert_allclose(
        out["forecast_close"], out["last_close"] * np.exp(prep.y_scaler.mean[0]), rtol=1e-6
    )
    np.testing.assert_allclose(out["loc"], prep.y_scaler.mean[0], rtol=1e-6)
    np.testing.assert_allclose(out["scale"], feats["volatility"][4:] * T_SCALE_PER_STD, rtol=1e-5)
    assert (out["df"] == 5.0).all()
