"""LiteRT serving: the converted network answers as Keras does, one window or a request's
windows at once, and a pyfunc served through it forecasts the same (batched or a window
at a time) without importing TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.features import FEATURES, assign_splits, make_features, prepare
from pipeline.forecasting import conformal, lite
from pipeline.forecasting.forecaster import OUTPUT_COLUMNS, PriceForecaster
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.forecasting.spec import min_rows, preprocessing_spec
from pipeline.forecasting.train import write_lite


def _random_weights(net) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    for w in net.weights:  # a trained-looking net, not the zero head
        w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))


@pytest.mark.parametrize("layers", [1, 2])
def test_the_converted_network_answers_as_keras_does(layers: int) -> None:
    net = build_model(LSTMParams(units=8, layers=layers, window=6, dropout=0.1), len(FEATURES))
    _random_weights(net)
    converted = lite.LiteNetwork(lite.convert(net, 6, len(FEATURES)))
    assert converted.input_shape == (1, 6, len(FEATURES)) and converted.batched
    keras_answer = lambda x: np.asarray(net(x, training=False))  # noqa: E731
    gap = lite.largest_difference(converted, keras_answer, (1, 6, len(FEATURES)))
    assert gap <= lite.TOLERANCE
    # and it is the network, not a constant: different windows, different answers
    x = np.random.default_rng(2).standard_normal((2, 1, 6, len(FEATURES))).astype("float32")
    assert np.abs(converted(x[0]) - converted(x[1])).max() > 1e-3


def test_the_pyfunc_forecasts_the_same_through_either_runtime(
    tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    feats = make_features(sample_bars.tail(120).reset_index(drop=True), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5)
    net = build_model(LSTMParams(units=4, layers=1, dropout=0.0, window=5), len(FEATURES))
    _random_weights(net)
    net.save(tmp_path / "network.keras")
    spec = preprocessing_spec(5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 50)
    (tmp_path / "preprocessing.json").write_text(json.dumps(spec))
    assert write_lite(net, 5, tmp_path / "network.tflite")

    with_lite, tf_only = PriceForecaster(), PriceForecaster()
    with_lite.load(
        tmp_path / "network.keras", tmp_path / "preprocessing.json", tmp_path / "network.tflite"
    )
    tf_only.load(tmp_path / "network.keras", tmp_path / "preprocessing.json")
    assert (with_lite.runtime, tf_only.runtime) == ("litert", "tensorflow")
    request = sample_bars.tail(40).assign(Date=lambda b: b["Date"].dt.strftime("%Y-%m-%d"))
    a, b = with_lite.predict(None, request).iloc[0], tf_only.predict(None, request).iloc[0]
    for column in ("forecast_close", "lower_80", "upper_95", "scale"):
        assert a[column] == pytest.approx(b[column], rel=1e-5)
    assert a["forecast_close"] != pytest.approx(806.19 * np.exp(prep.y_scaler.mean[0]))

    # a process serving through LiteRT never imports TensorFlow (it slows every request)
    script = f"""
import sys, pandas as pd
from pathlib import Path
from pipeline.forecasting.forecaster import PriceForecaster
m = PriceForecaster()
m.load(Path({str(tmp_path / "network.keras")!r}), Path({str(tmp_path / "preprocessing.json")!r}),
       Path({str(tmp_path / "network.tflite")!r}))
rows = pd.read_csv({str(tmp_path / "request.csv")!r})
print(m.predict(None, rows)["forecast_close"].iloc[0], "tensorflow" in sys.modules)
"""
    request.to_csv(tmp_path / "request.csv", index=False)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert float(out[0]) == pytest.approx(a["forecast_close"]) and out[1] == "False"


def _one_window_flatbuffer(net, window: int) -> bytes:  # type: ignore[no-untyped-def]
    """The network as versions logged before batching carry it: its loop kept, at a batch
    of one (it cannot be resized)."""
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        net.export(
            f"{tmp}/saved",
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec([1, window, len(FEATURES)], tf.float32)],
        )
        return bytes(tf.lite.TFLiteConverter.from_saved_model(f"{tmp}/saved").convert())


@pytest.mark.parametrize("layers", [1, 2])
def test_many_windows_at_once_answer_as_one_at_a_time_and_as_keras(layers: int) -> None:
    net = build_model(LSTMParams(units=8, layers=layers, window=6, dropout=0.1), len(FEATURES))
    _random_weights(net)
    batched = lite.LiteNetwork(lite.convert(net, 6, len(FEATURES)))
    old = lite.LiteNetwork(_one_window_flatbuffer(net, 6))
    assert not old.batched
    shape = (1, 6, len(FEATURES))
    padded = lite.Padded(lite.compiled(net, shape), lite.compiled(net, (16, 6, len(FEATURES))), 16)
    windows = np.random.default_rng(3).standard_normal((33, *shape[1:])).astype("float32")
    keras_answer = np.asarray(net(windows, training=False))
    one_at_a_time = np.concatenate([batched(windows[i : i + 1]) for i in range(len(windows))])
    assert np.abs(one_at_a_time - keras_answer).max() <= lite.TOLERANCE
    for n in (33, 1, 7, 33, 2):  # resized back and forth
        assert batched(windows[:n]).shape == (n, 2)
        assert np.abs(batched(windows[:n]) - one_at_a_time[:n]).max() <= lite.TOLERANCE
        assert np.abs(old(windows[:n]) - keras_answer[:n]).max() <= lite.TOLERANCE
        if n <= 16:  # the compiled graphs of fixed shapes, zero-padded
            assert np.abs(padded(windows[:n]) - keras_answer[:n]).max() <= lite.TOLERANCE


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame):
    """A small random-weight network whose version has adaptive widths (lookback 30): its
    Keras file, spec, and LiteRT conversions old (one window a call) and new."""
    tmp = tmp_path_factory.mktemp("calibrated")
    feats = make_features(sample_bars.tail(200).reset_index(drop=True), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5)
    net = build_model(LSTMParams(units=6, layers=1, dropout=0.0, window=5), len(FEATURES))
    _random_weights(net)
    net.save(tmp / "network.keras")
    spec = preprocessing_spec(
        5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 100, None, prep.base,
        conformal.spec(0.05, 30),
    )  # fmt: skip
    (tmp / "preprocessing.json").write_text(json.dumps(spec))
    assert write_lite(net, 5, tmp / "network.tflite")
    (tmp / "network_old.tflite").write_bytes(_one_window_flatbuffer(net, 5))
    return tmp, net, min_rows(spec)


def test_a_request_forecasts_the_same_batched_as_window_by_window(
    calibrated, sample_bars: pd.DataFrame
) -> None:
    tmp, net, needed = calibrated
    paths = tmp / "network.keras", tmp / "preprocessing.json"

    def served(lite_file: str | None) -> PriceForecaster:
        model = PriceForecaster()
        model.load(*paths, tmp / lite_file if lite_file else None)
        return model

    batched, old, tf_padded = served("network.tflite"), served("network_old.tflite"), served(None)
    # the reference: Keras itself, a window a call (as forecast_next went before batching)
    reference = served("network.tflite")
    reference.use_network(lambda x: np.asarray(net(x, training=False)), 1)
    calls: list[int] = []
    network = batched._network
    batched.use_network(lambda x: calls.append(len(x)) or network(x), batched.batch)
    chunked = served("network.tflite")
    chunked.use_network(chunked._network, 4)  # a request's windows 4 a call
    assert (batched.batch, tf_padded.batch) == (lite.MAX_BATCH, 31)
    widths: list[float] = []
    for rows in (needed, needed + 7, needed + 30, needed + 45):
        request = sample_bars.tail(rows).assign(Date=lambda b: b["Date"].dt.strftime("%Y-%m-%d"))
        want = reference.forecast_next(request)
        calls.clear()
        for model in (batched, old, tf_padded, chunked):
            got = model.forecast_next(request)
            assert list(got) == OUTPUT_COLUMNS
            for column in OUTPUT_COLUMNS:
                if isinstance(want[column], float):
                    assert got[column] == pytest.approx(want[column], rel=1e-5, abs=1e-9)
                else:
                    assert got[column] == want[column]
        assert calls == [1 + min(rows - needed, 30)]  # all the windows in one call
        widths.append(want["upper_95"] - want["lower_95"])
    # the same newest bar each time: the widths differ by the earlier sessions' misses alone,
    # as far back as the lookback (30) reaches
    assert len({round(w, 9) for w in widths[:3]}) == 3
    assert widths[3] == pytest.approx(widths[2])


def test_a_forecaster_keeping_its_windows_answers_the_same_running_only_the_new_ones(
    calibrated, sample_bars: pd.DataFrame
) -> None:
    tmp, _, needed = calibrated
    paths = tmp / "network.keras", tmp / "preprocessing.json", tmp / "network.tflite"
    plain, keeping = PriceForecaster(), PriceForecaster()
    plain.load(*paths)
    keeping.load(*paths)
    keeping.remember(10**6)
    assert plain._memo is None and keeping._memo is not None
    # none where it would not be exact: TensorFlow's fixed-shape graphs (one window and many
    # go through different code), nor where a request is one window (no adaptive widths)
    on_tf = PriceForecaster()
    on_tf.load(*paths[:2])
    on_tf.remember(10**6)
    assert on_tf.runtime == "tensorflow" and on_tf._memo is None
    no_widths = PriceForecaster()
    no_widths.load(*paths)
    no_widths._conformal = (0.0, 0)
    no_widths.remember(10**6)
    assert no_widths._memo is None
    # what makes keeping exact: a window's output does not depend on the others in its call
    network = keeping._network
    windows = np.random.default_rng(4).standard_normal((31, 5, len(FEATURES))).astype("float32")
    whole = network(windows)
    for part in (slice(0, 1), slice(3, 4), slice(5, 17), slice(30, 31)):
        np.testing.assert_array_equal(network(windows[part]), whole[part])

    bars = sample_bars.assign(Date=lambda b: b["Date"].dt.strftime("%Y-%m-%d"))
    rows = needed + 30  # the lookback (30): 31 windows a request
    for end in range(len(bars) - 5, len(bars) + 1):  # a client asking every session
        request = bars.iloc[end - rows : end]
        assert keeping.forecast_next(request) == plain.forecast_next(request)  # to the digit
    assert keeping._memo.ran == 31 + 5  # the first request's windows, then one a session
