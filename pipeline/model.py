"""The forecaster network: a Keras 3 LSTM over windows of scale-free features.

It predicts tomorrow's (standardised) log return; the price forecast is
today's close times exp(return), so test prices outside the training range
are no problem (the tutorial recipe on min-max-scaled price levels is 3x worse
than naive on the shipped series for exactly that reason).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras


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
    """Stacked LSTM -> Dense(1); units halve per layer to keep deep variants cheap."""
    inputs = keras.Input(shape=(params.window, n_features))
    x = inputs
    for i in range(params.layers):
        last = i == params.layers - 1
        x = keras.layers.LSTM(max(4, params.units // (2**i)), return_sequences=not last)(x)
        if params.dropout > 0:
            x = keras.layers.Dropout(params.dropout)(x)
    # Zero-initialised head: the net starts at the training-mean return (random walk with
    # drift) and departs from it only as far as the data pull it; a random head starts
    # noisier than naive and early stopping often keeps some of that noise.
    outputs = keras.layers.Dense(1, kernel_initializer="zeros")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    return model
