import keras
import numpy as np
import pytest

from pipeline.model import LSTMParams, build_model


def test_from_dict_types_strings_and_ignores_other_keys() -> None:
    raw = {
        "units": "8",
        "layers": "2",
        "dropout": "0.25",
        "learning_rate": "0.01",
        "window": "5",
        "batch_size": "16",
        "epochs": "3",  # logged beside the params; not a network parameter
    }
    params = LSTMParams.from_dict(raw)
    assert params == LSTMParams(
        units=8, layers=2, dropout=0.25, learning_rate=0.01, window=5, batch_size=16
    )
    assert isinstance(params.units, int) and isinstance(params.dropout, float)
    assert LSTMParams.from_dict({"units": 4}) == LSTMParams(units=4)  # the rest: defaults
    assert LSTMParams.from_dict(params.as_dict()) == params


def test_units_halve_per_layer_with_a_floor_of_four() -> None:
    model = build_model(LSTMParams(units=16, layers=3, dropout=0.0, window=5), n_features=3)
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    assert [layer.units for layer in lstms] == [16, 8, 4]
    assert [layer.return_sequences for layer in lstms] == [True, True, False]
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    with_dropout = build_model(LSTMParams(units=4, layers=2, dropout=0.3, window=5), 3)
    units = [layer.units for layer in with_dropout.layers if isinstance(layer, keras.layers.LSTM)]
    assert units == [4, 4]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in with_dropout.layers) == 2


def test_untrained_net_predicts_exactly_zero() -> None:
    params = LSTMParams(units=4, layers=1, dropout=0.1, window=5)
    model = build_model(params, n_features=8)
    assert model.input_shape == (None, 5, 8) and model.output_shape == (None, 1)
    x = np.random.default_rng(0).normal(0, 3, (7, 5, 8)).astype("float32")
    out = np.asarray(model(x, training=False))
    assert out.shape == (7, 1) and not out.any()
    assert model.optimizer.learning_rate.numpy() == pytest.approx(params.learning_rate)
    assert model.loss == "mse"
