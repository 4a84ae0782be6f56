"""LiteRT serving: the converted network answers as Keras does, and a pyfunc served
through it forecasts the same without importing TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.features import FEATURES, assign_splits, make_features, prepare
from pipeline.forecasting import lite
from pipeline.forecasting.forecaster import PriceForecaster
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.forecasting.spec import preprocessing_spec
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
    assert converted.input_shape == (1, 6, len(FEATURES))
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
