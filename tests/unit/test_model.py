import math

import keras
import numpy as np
import pytest

from pipeline.forecasting.model import (
    DF,
    MIN_MULTIPLIER,
    T_SCALE_PER_STD,
    LSTMParams,
    build_model,
    distribution,
    loc_mse,
    nll,
    training_loss,
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


def test_untrained_net_is_the_naive_interval() -> None:
    """Zero-initialised head: location 0 (the training-mean return) and a multiplier of 1 on
    the base scale (the trailing volatility), whatever the input: a t whose std is the
    trailing std, the naive interval's."""
    params = LSTMParams(units=4, layers=1, dropout=0.1, window=5)
    model = build_model(params, n_features=8)
    assert model.input_shape == (None, 5, 8) and model.output_shape == (None, 2)
    x = np.random.default_rng(0).normal(0, 3, (7, 5, 8)).astype("float32")
    base = np.linspace(0.5, 2.0, 7)
    loc, scale = distribution(np.asarray(model(x, training=False)), base)
    assert not loc.any()
    std = scale * math.sqrt(DF / (DF - 2))  # a Student-t's standard deviation
    assert std == pytest.approx(base, abs=1e-5)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(params.learning_rate)
    assert model.loss is training_loss


def test_student_t_nll_on_a_hand_made_example() -> None:
    # y = 1, loc = 0, t scale 2 (base 2 / T_SCALE_PER_STD, multiplier 1), df 5:
    # log 2 + 3 * log(1 + 0.25 / 5) + lgamma(2.5) - lgamma(3) + 0.5 * log(5 pi)
    raw = math.log(math.expm1(1 - MIN_MULTIPLIER))
    y_true = np.array([[1.0, 2.0 / T_SCALE_PER_STD]], dtype="float32")
    y_pred = np.array([[0.0, raw]], dtype="float32")
    want = (
        math.log(2)
        + 3 * math.log(1 + 0.25 / 5)
        + math.lgamma(2.5)
        - math.lgamma(3)
        + 0.5 * math.log(5 * math.pi)
    )
    assert float(nll(y_true, y_pred)) == pytest.approx(want, abs=1e-5)
    # the location's own squared error, reported beside it; training minimises the NLL
    assert float(loc_mse(y_true, y_pred)) == pytest.approx(1.0)
    assert float(training_loss(y_true, y_pred)) == pytest.approx(want, abs=1e-5)


def test_training_learns_the_scale_and_keeps_the_location_at_the_drift() -> None:
    """Noise is t(5) with t scale 0.5, the base says std 1: the scale is learned, the
    location stays where it starts (0: the training-mean return)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.zeros((4000, 5, 2), dtype="float32")
    y = np.column_stack([0.5 * rng.standard_t(DF, 4000), np.ones(4000)]).astype("float32")
    model = build_model(LSTMParams(units=4, window=5, learning_rate=0.05, dropout=0.0), 2)
    model.fit(x, y, epochs=30, batch_size=256, verbose=0)
    loc, scale = distribution(np.asarray(model(x[:1], training=False)), np.ones(1))
    assert loc[0] == 0.0
    assert scale[0] == pytest.approx(0.5, abs=0.05)
