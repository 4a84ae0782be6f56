"""The baseline for bench.serving: the same network and preprocessing, but one Keras
`model.predict` call per request instead of the compiled tf.function."""

from __future__ import annotations

from pathlib import Path

from pipeline.forecaster import PriceForecaster


class PredictPerRequest(PriceForecaster):
    def load(self, keras_path: Path, spec_path: Path) -> None:
        super().load(keras_path, spec_path)
        net = self.net
        self._one = lambda x: net.predict(x, verbose=0)
