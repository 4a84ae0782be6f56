"""The forecaster network: a Keras 3 LSTM over windows of scale-free features.

It predicts a distribution for tomorrow's (standardised) log return: a Student-t whose
scale is a learned multiple of today's trailing volatility (the base scale), trained on
the negative log-likelihood, around a location that stays at the training-mean return
(see training_loss for why). The price forecast is
today's close times exp(location), so test prices outside the training range are no
problem (the tutorial recipe on min-max-scaled price levels is 3x worse than naive on
the shipped series for exactly that reason); the scale gives the intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import keras
from keras import ops

# the head's numbers, shared with the pyfunc (which must not need keras to read them)
from pipeline.forecasting.intervals import (
    MIN_MULTIPLIER,
    STUDENT_T_DF,
    T_SCALE_PER_STD,
    UNIT_MULTIPLIER_BIAS,
    distribution,
)

DF = STUDENT_T_DF
__all__ = ["MIN_MULTIPLIER", "T_SCALE_PER_STD", "distribution"]
_T_LOG_NORM = math.lgamma(DF / 2) - math.lgamma((DF + 1) / 2) + 0.5 * math.log(DF * math.pi)


@keras.saving.register_keras_serializable(package="pipeline")
def nll(y_true: Any, y_pred: Any) -> Any:
    """Mean negative log-likelihood of y under the Student-t(DF) forecast, where
    y_true = [y, base scale], y_pred = [loc, raw multiplier]."""
    loc, scale = _loc_scale(y_true, y_pred)
    z = (y_true[:, 0] - loc) / scale
    return ops.mean(ops.log(scale) + (DF + 1) / 2 * ops.log1p(z * z / DF)) + _T_LOG_NORM


@keras.saving.register_keras_serializable(package="pipeline")
def loc_mse(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error of the location alone: the point forecast's own loss."""
    return ops.mean(ops.square(y_true[:, 0] - y_pred[:, 0]))


@keras.saving.register_keras_serializable(package="pipeline")
def training_loss(y_true: Any, y_pred: Any) -> Any:
    """The likelihood of the scale, at the location the net starts from (the training-mean
    return): trained too, by squared error or by the likelihood, the location made the point
    forecast worse than naive on the shipped series (MASE 1.01-1.03 on the test days, where
    the drift gets 0.998). Next-day levels are a random walk here; their risk is not."""
    frozen = ops.concatenate([ops.stop_gradient(y_pred[:, :1]), y_pred[:, 1:]], axis=1)
    return nll(y_true, frozen)


def _loc_scale(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    multiplier = ops.softplus(y_pred[:, 1]) + MIN_MULTIPLIER
    return y_pred[:, 0], y_true[:, 1] * T_SCALE_PER_STD * multiplier


@dataclass(frozen=True)
class LSTMParams:
    units: int = 32
    layers: int = 1
    dropout: float = 0.1
    learning_rate: float = 1e-3
    window: int = 20
    batch_size: int = 64

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LSTMParams:
        """From MLflow params or Optuna's dict (values may arrive as strings)."""
        ints = {"units", "layers", "window", "batch_size"}
        values: dict[str, Any] = {
            k: int(v) if k in ints else float(v)
            for k, v in raw.items()
            if k in cls.__dataclass_fields__
        }
        return cls(**values)


def build_model(params: LSTMParams, n_features: int) -> keras.Model:
    """Stacked LSTM -> Dense(2) (location, raw scale); units halve per layer to keep deep
    variants cheap."""
    inputs = keras.Input(shape=(params.window, n_features))
    x = inputs
    for i in range(params.layers):
        last = i == params.layers - 1
        x = keras.layers.LSTM(max(4, params.units // (2**i)), return_sequences=not last)(x)
        if params.dropout > 0:
            x = keras.layers.Dropout(params.dropout)(x)
    # Zero-initialised head: the net starts at the training-mean return with the trailing
    # volatility as its std (the naive interval's, a random walk with drift) and departs
    # from it only as far as the data pull it; a random head starts noisier than naive and
    # early stopping often keeps some of that noise.
    outputs = keras.layers.Dense(
        2,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([0.0, UNIT_MULTIPLIER_BIAS]),
    )(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss=training_loss,
        metrics=[nll, loc_mse],  # val_nll: what tuning, pruning and early stopping watch
    )
    return model
