import math

import keras
import numpy as np
import pytest

from pipeline.model import (
    MIN_SCALE,
    LSTMParams,
    build_model,
    distribution,
    gaussian_nll,
    loc_mse,
)


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


def test_untrained_net_is_the_random_walk_with_drift_and_training_std() -> None:
    """Zero-initialised head: location 0 and scale 1 in standardised units, whatever the
    input: the training-mean return with the training std of returns."""
    params = LSTMParams(units=4, layers=1, dropout=0.1, window=5)
    model = build_model(params, n_features=8)
    assert model.input_shape == (None, 5, 8) and model.output_shape == (None, 2)
    x = np.random.default_rng(0).normal(0, 3, (7, 5, 8)).astype("float32")
    loc, scale = distribution(np.asarray(model(x, training=False)))
    assert not loc.any() and scale == pytest.approx(np.ones(7), abs=1e-6)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(params.learning_rate)
    assert model.loss is gaussian_nll


def test_gaussian_nll_on_a_hand_made_example() -> None:
    # y = 1, loc = 0, scale = 2 (raw = softplus^-1(2 - MIN_SCALE)):
    # 0.5 * (1/2)^2 + log 2 + 0.5 log(2 pi) = 0.125 + 0.693147 + 0.918939
    raw_scale = math.log(math.expm1(2 - MIN_SCALE))
    y_pred = np.array([[0.0, raw_scale]], dtype="float32")
    got = float(gaussian_nll(np.array([1.0], dtype="float32"), y_pred))
    assert got == pytest.approx(0.125 + math.log(2) + 0.5 * math.log(2 * math.pi), abs=1e-5)
    # the location's own squared error, beside it
    assert float(loc_mse(np.array([1.0], dtype="float32"), y_pred)) == pytest.approx(1.0)


def test_nll_prefers_the_true_scale() -> None:
    """Trained on N(0, 0.5^2) noise from constant inputs, the scale goes to about 0.5."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.zeros((2000, 5, 2), dtype="float32")
    y = rng.normal(0, 0.5, 2000).astype("float32")
    model = build_model(LSTMParams(units=4, window=5, learning_rate=0.05, dropout=0.0), 2)
    model.fit(x, y, epochs=30, batch_size=256, verbose=0)
    _, scale = distribution(np.asarray(model(x[:1], training=False)))
    assert scale[0] == pytest.approx(0.5, abs=0.05)
