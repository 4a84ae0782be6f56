"""The logged pyfunc's own logic: request checks, its preprocessing spec, and its forecast."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.data.features import (
    FEATURES,
    Scaler,
    assign_splits,
    base_scale,
    make_features,
    prepare,
)
from pipeline.forecasting.forecaster import OUTPUT_COLUMNS, PriceForecaster
from pipeline.forecasting.model import T_SCALE_PER_STD, LSTMParams, build_model
from pipeline.forecasting.request import TOO_EXTREME, BadInput, check_bars, request_arrays, shown
from pipeline.forecasting.spec import min_rows, preprocessing_spec


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


def _refused(frame: Any, needed: int = 5) -> str:
    with pytest.raises(BadInput) as caught:
        check_bars(frame, needed=needed)
    message = str(caught.value.message)
    assert len(message) < 500
    return message


def test_non_finite_numbers_are_refused_naming_column_and_day() -> None:
    bars = _bars(6)
    inf = bars.assign(Close=[1.5, 1.5, np.inf, 1.5, 1.5, -np.inf])
    assert (
        _refused(inf) == "Close must be a finite number; infinite on ['2020-01-03', '2020-01-06']"
    )
    text = bars.astype({"Volume": object}).assign(Volume=["1e999", 1, 1, 1, 1, 1])
    assert _refused(text) == "Volume must be a finite number; infinite on ['2020-01-01']"
    huge = bars.astype({"Open": object}).assign(Open=[10**400, 1, 1, 1, 1, 1])
    assert _refused(huge) == "Open must be a finite number; infinite on ['2020-01-01']"
    lists = bars.astype({"High": object}).assign(High=[[1], 2, 2, 2, 2, 2])
    assert _refused(lists).startswith("High must be a number on every row; missing or text on")


@pytest.mark.parametrize("day", ["2262-05-01", "9999-12-31", "1899-12-31", "0001-01-01"])
def test_out_of_range_dates_are_refused_naming_the_value(day: str) -> None:
    bars = _bars(6).assign(Date=[*_bars(6)["Date"][:-1], day])
    assert _refused(bars) == (
        f"Date must be between 1900-01-01 and 2200-12-31; out of range: ['{day}']"
    )


def test_bad_dates_are_quoted_cut_short() -> None:
    bars = _bars(6).assign(Date=[*_bars(6)["Date"][:-1], "x" * 10_000_000])
    message = _refused(bars)
    assert message == f"Date must be YYYY-MM-DD; unreadable: ['{'x' * 40}... (10000000 chars)']"
    assert _refused(_bars(6).assign(Date=[None] * 6)).endswith("unreadable: [None, None, None]")
    assert _refused(_bars(6).assign(Date=["20200101"] * 6)).endswith(
        "['20200101', '20200101', '20200101']"
    )
    both = _bars(6).assign(Date=["9999-01-01", "x", *_bars(6)["Date"][2:]])
    assert _refused(both) == "Date must be YYYY-MM-DD; unreadable: ['x']"  # first things first
    # as in training (bars.parse_dates): the day written, whatever the offset or time
    mixed = _bars(6).assign(Date=[f"2020-01-0{d}T23:00:00+0{d % 2}:00" for d in range(1, 7)])
    assert check_bars(mixed, needed=5)["Date"].dt.day.tolist() == [1, 2, 3, 4, 5, 6]
    assert shown(["abc", 5, "y" * 41]) == ["abc", 5, f"{'y' * 40}... (41 chars)"]


def test_a_repeated_column_is_refused() -> None:
    bars = _bars(6)
    twice = pd.concat([bars, bars[["Close"]]], axis=1)
    assert _refused(twice) == (
        "column(s) ['Close'] sent more than once; "
        "send ['Date', 'Open', 'High', 'Low', 'Close', 'Volume']"
    )


CELLS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.text(max_size=60)
    | st.none()
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.sampled_from(["2262-05-01", "9999-12-31", "1e999", "2020-01-02T00:00:00+05:00"])
)


@st.composite
def odd_bars(draw: st.DrawFn, rows: tuple[int, int] = (0, 14)) -> pd.DataFrame:
    """Sound bars with a few odd cells (and sometimes odd prices throughout)."""
    n = draw(st.integers(*rows))
    low, high = draw(st.sampled_from([(1.0, 2.0), (1e-300, 1e-290), (1e290, 1e300), (0.5, 1e8)]))
    close = draw(st.lists(st.floats(low, high), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "Date": list(pd.bdate_range("2020-01-01", periods=n).strftime("%Y-%m-%d")),
            "Open": close[::-1],
            "High": [c * 1.5 for c in close],
            "Low": [c / 1.5 for c in close],
            "Close": close,
            "Volume": draw(st.lists(st.floats(0, 1e300), min_size=n, max_size=n)),
        },
        dtype=object,
    )
    if n:
        for _ in range(draw(st.integers(0, 2))):
            row, col = draw(st.integers(0, n - 1)), draw(st.sampled_from(list(frame.columns)))
            frame.loc[row, col] = draw(CELLS)
    return frame


@settings(max_examples=300, deadline=None)
@given(frame=odd_bars())
def test_check_bars_types_the_rows_or_says_what_is_wrong(frame: pd.DataFrame) -> None:
    try:
        bars = check_bars(frame, needed=5, max_rows=12)
    except BadInput as exc:
        assert 0 < len(exc.message) < 500
    else:
        assert np.isfinite(bars[["Open", "High", "Low", "Close", "Volume"]].to_numpy()).all()
        assert bars["Date"].is_monotonic_increasing and len(bars) >= 5


@settings(max_examples=300, deadline=None, derandomize=True)
@given(frame=odd_bars())
def test_the_numpy_path_agrees_with_check_bars_on_any_table(frame: pd.DataFrame) -> None:
    """request_arrays takes a fast path for well-formed requests: it must accept exactly
    what check_bars accepts, with the same numbers, and refuse with the same words; both
    on object columns and on the typed ones (Arrow-backed text, floats) that pandas infers
    when MLflow builds the request's frame from JSON."""
    inferred = pd.DataFrame({c: list(frame[c]) for c in frame.columns})
    for table in (frame, inferred):
        try:
            bars = check_bars(table, needed=5, max_rows=12)
        except BadInput as exc:
            with pytest.raises(BadInput) as fast:
                request_arrays(table, needed=5, max_rows=12)
            assert fast.value.message == exc.message
        else:
            days, ohlcv = request_arrays(table, needed=5, max_rows=12)
            np.testing.assert_array_equal(days, bars["Date"].to_numpy(dtype="datetime64[D]"))
            np.testing.assert_array_equal(ohlcv, bars[["Open", "High", "Low", "Close", "Volume"]])


def test_the_numpy_path_takes_typed_and_text_numbers_alike() -> None:
    typed = _bars(6)
    text = typed.astype(str)
    for frame in (typed, text, typed.assign(Volume=[10, 11, 12, 13, 14, 15])):
        days, ohlcv = request_arrays(frame, 5, 12)
        assert days.dtype == "datetime64[D]" and ohlcv.shape == (6, 5)


def test_a_json_request_is_read_without_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame MLflow's scoring server builds from a JSON body (Arrow-backed dates, float
    columns) is read by the Arrow/NumPy path; check_bars is only for what that refuses."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    import pipeline.forecasting.request as request

    sent = _bars(6).assign(Volume=[10, 11, 12, 13, 14, 15])  # integers, as JSON has them
    frame = infer_and_parse_data(
        {"dataframe_split": json.loads(sent.to_json(orient="split", index=False))}
    )

    def slow(*args: Any, **kwargs: Any) -> pd.DataFrame:
        raise AssertionError("a well-formed JSON request went through check_bars")

    monkeypatch.setattr(request, "check_bars", slow)
    days, ohlcv = request_arrays(frame, 5, 12)
    assert days.tolist() == pd.to_datetime(sent["Date"]).dt.date.tolist()
    np.testing.assert_array_equal(ohlcv[:, 4], [10, 11, 12, 13, 14, 15])
    joined = pd.concat([frame.iloc[:3], frame.iloc[3:]], ignore_index=True)  # Arrow chunks
    assert request_arrays(joined, 5, 12)[0].tolist() == days.tolist()
    with pytest.raises(AssertionError):  # and the slow path is there for the rest
        request_arrays(frame.assign(Date=frame["Date"].str.replace("-", "/")), 5, 12)


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
    prep = prepare(feats, window=5, base="trailing")
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5)
    tmp = tmp_path_factory.mktemp("forecaster")
    build_model(params, len(FEATURES)).save(tmp / "network.keras")
    spec = preprocessing_spec(5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 50, None, prep.base)
    (tmp / "preprocessing.json").write_text(json.dumps(spec))
    model = PriceForecaster()
    model.load(tmp / "network.keras", tmp / "preprocessing.json")
    return model, prep


def test_forecast_next_undoes_the_scaling_and_names_the_next_session(
    forecaster, sample_bars: pd.DataFrame
) -> None:
    model, prep = forecaster
    request = sample_bars.tail(30).assign(Date=lambda b: b["Date"].dt.strftime("%Y-%m-%d"))
    out = model.predict(None, request)
    assert list(out.columns) == OUTPUT_COLUMNS
    row = out.iloc[0]
    # a zero output is the training-mean return, unscaled
    assert row["forecast_return"] == pytest.approx(prep.y_scaler.mean[0])
    assert row["forecast_close"] == pytest.approx(806.19 * np.exp(prep.y_scaler.mean[0]))
    assert (row["as_of"], row["last_close"]) == ("2013-03-01", 806.19)
    assert row["for_date"] == "2013-03-04"  # Friday -> the next XNYS session, Monday
    assert row["model_version"] == "unknown"  # not from a registry (served: the alias)
    # an untrained head: the scale is the base scale, the trailing volatility of the last
    # bar; intervals are close * exp(loc -+ z * scale)
    vol = make_features(sample_bars.tail(30).reset_index(drop=True), 5, 5)["volatility"].iloc[-1]
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
    with pytest.raises(BadInput, match="needs at least 27"):  # window 5 + HAR's 22
        model.predict(None, request.tail(26))
    with pytest.raises(BadInput, match="at most 50"):
        model.predict(None, sample_bars.tail(51))


def test_forecast_all_makes_one_forecast_per_full_window(
    forecaster, sample_bars: pd.DataFrame
) -> None:
    model, prep = forecaster
    bars = sample_bars.tail(50).reset_index(drop=True)
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


def test_bars_at_the_ends_of_the_date_range_still_get_a_forecast(forecaster) -> None:
    model, _ = forecaster
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 30)))
    for start, days in (("1900-01-01", 30), ("2200-11-20", 30)):
        dates = pd.bdate_range(start, periods=days).strftime("%Y-%m-%d")
        bars = pd.DataFrame(
            {"Date": dates, "Open": close, "High": close * 1.01, "Low": close * 0.99}
        ).assign(Close=close, Volume=1000.0)
        out = model.predict(None, bars).iloc[0]
        assert out["as_of"] == dates[-1] and out["for_date"] > out["as_of"]


def test_extreme_prices_are_refused_not_forecast_as_nan(forecaster) -> None:
    model, _ = forecaster
    bars = pd.DataFrame(  # every number finite, but High / Low overflows
        {
            "Date": pd.bdate_range("2020-01-01", periods=30).strftime("%Y-%m-%d"),
            "Open": 1.0,
            "High": 1e300,
            "Low": 1e-300,
            "Close": 1.0,
            "Volume": 1000.0,
        }
    )
    with pytest.raises(BadInput, match="too extreme") as caught:
        model.predict(None, bars)
    assert caught.value.message == TOO_EXTREME


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=odd_bars(rows=(9, 14)))
def test_the_pyfunc_forecasts_or_refuses_any_table(forecaster, frame: pd.DataFrame) -> None:
    model, _ = forecaster
    try:
        out = model.predict(None, frame)
    except BadInput as exc:
        assert 0 < len(exc.message) < 500
    else:
        numbers = ["last_close", "forecast_close", "forecast_return", "lower_95", "upper_95"]
        assert np.isfinite(out[numbers].to_numpy(dtype="float64")).all()


def test_lookup_version_says_unknown_when_it_cannot_tell(cfg) -> None:
    from pipeline import tracking
    from pipeline.forecasting.spec import lookup_version

    assert lookup_version(None) == "unknown"  # a model logged without its run id
    tracking.client(cfg)  # an empty registry: no version from that run
    assert lookup_version("0123456789abcdef") == "unknown"


def test_a_request_with_the_vendors_adj_close_is_adjusted_as_in_training() -> None:
    """A 2:1 split inside the window: sent with Adj Close, the model sees what training saw
    (pipeline.data.bars.adjust), not a 50 % fall; a bad Adj Close is refused."""
    from pipeline.data.bars import adjust

    raw = _bars(6)
    raw.loc[:2, ["Open", "High", "Low", "Close"]] *= 2  # before the split: twice the price
    raw["Adj Close"] = raw["Close"] / np.where(raw.index <= 2, 2.0, 1.0)
    for frame in (raw, raw.astype({"Volume": str})):  # the NumPy path and check_bars' path
        _, ohlcv = request_arrays(frame, 5, 12)
        want = adjust(raw.astype({"Date": "datetime64[ns]"}))
        np.testing.assert_allclose(ohlcv, want[["Open", "High", "Low", "Close", "Volume"]])
    with pytest.raises(BadInput, match="Adj Close must be a number > 0"):
        request_arrays(raw.assign(**{"Adj Close": 0.0}), 5, 12)


def test_an_untrained_net_on_the_har_base_is_the_har_interval(
    tmp_path, sample_bars: pd.DataFrame
) -> None:
    """Zero head, HAR base: the served scale is exactly HAR's forecast std, fitted on the
    training rows, as a Student-t(5) scale (its std is HAR's), computed from the request."""
    from pipeline.evaluation import baselines

    bars = sample_bars.tail(400).reset_index(drop=True)
    feats = make_features(bars, 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5, base="har")
    build_model(LSTMParams(units=4, window=5), len(FEATURES)).save(tmp_path / "network.keras")
    spec = preprocessing_spec(5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 500, None, prep.base)
    (tmp_path / "preprocessing.json").write_text(json.dumps(spec))
    model = PriceForecaster()
    model.load(tmp_path / "network.keras", tmp_path / "preprocessing.json")
    row = model.predict(None, bars.tail(40)).iloc[0]
    v = baselines.range_variance(*(bars[c].to_numpy() for c in ["Open", "High", "Low", "Close"]))
    r_next = np.append(np.diff(np.log(bars["Close"].to_numpy())), np.nan)
    at = pd.Index(bars["Date"]).get_indexer(feats["Date"][feats["split"] == "train"])
    har = baselines.har_fit(v, r_next, at)
    sigma = baselines.har_sigma(har, v)[-1]
    assert row["scale"] == pytest.approx(sigma * T_SCALE_PER_STD, rel=1e-6)
    z = 1.4758840  # t(5) 80 % quantile
    assert row["upper_80"] == pytest.approx(
        row["last_close"] * np.exp(row["forecast_return"] + z * sigma * T_SCALE_PER_STD),
        rel=1e-6,
    )


def test_a_version_logged_before_the_subpackages_still_unpickles() -> None:
    import cloudpickle

    from pipeline.forecasting.forecaster import PriceForecaster

    old = Path(__file__).parents[1] / "fixtures" / "flat_layout_python_model.pkl"
    assert b"pipeline.forecaster" in old.read_bytes()  # the flat layout's module path
    assert type(cloudpickle.loads(old.read_bytes())) is PriceForecaster


def test_a_version_combined_with_har_serves_the_geometric_mean_of_the_two_scales(
    tmp_path, sample_bars: pd.DataFrame
) -> None:
    """Trailing base, untrained head, combined with HAR: the served scale is
    sqrt(network's * HAR's), both computed from the request, and a request's answer is the
    evaluation's forecast for the same day (forecast_all: what the backtest scores)."""
    from pipeline.forecasting.train import har_fit

    bars = sample_bars.tail(400).reset_index(drop=True)
    feats = make_features(bars, 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5, base="trailing")
    build_model(LSTMParams(units=4, window=5), len(FEATURES)).save(tmp_path / "network.keras")
    plain = preprocessing_spec(5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 500, None, prep.base)
    served = {}
    for name, combine in (("plain", None), ("combined", har_fit(feats))):
        spec = {**plain, "combine": combine}
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
        model = PriceForecaster()
        model.load(tmp_path / "network.keras", tmp_path / f"{name}.json")
        served[name] = model.predict(None, bars.tail(40)).iloc[0]
        evaluated = model.forecast_all(bars.tail(40).reset_index(drop=True)).iloc[-1]
        assert evaluated["scale"] == pytest.approx(served[name]["scale"], rel=1e-6)
    har = base_scale(feats[FEATURES].to_numpy()[-1:], har_fit(feats))[0] * T_SCALE_PER_STD
    want = math.sqrt(served["plain"]["scale"] * har)
    assert served["combined"]["scale"] == pytest.approx(want, rel=1e-6)
    assert served["combined"]["scale"] != pytest.approx(served["plain"]["scale"], rel=1e-3)
