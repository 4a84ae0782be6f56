"""The comparisons for bench.serving: the project's pyfunc keeping no windows (every
request's windows run, as a client's first request), the same network and preprocessing on
the compiled tf.function instead of LiteRT, through LiteRT one call a window (as requests
went before their windows were batched), and with one Keras `model.predict` call per
request, those three keeping none either; and the floor: a pyfunc that does nothing but
answer a constant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from pipeline.forecasting.forecaster import PriceForecaster
from pipeline.forecasting.lite import MAX_BATCH


class Constant(PythonModel):
    """What serving costs when the model costs nothing: the same server, the same body, and
    the same answer path as the project's model (records when the server asks for them)."""

    answers_as_records = False

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame | list[dict[str, Any]]:
        row = {"forecast_close": 1.0}
        return [row] if self.answers_as_records else pd.DataFrame([row])


class Unkept(PriceForecaster):
    """The project's pyfunc keeping no windows, whatever the server says (memo.py): every
    request's windows run through the network."""

    def remember(self, capacity: int) -> None:
        super().remember(0)


class CompiledTF(Unkept):
    """The project's pyfunc served by its compiled tf.function, LiteRT left aside."""

    def load(self, keras_path: Path, spec_path: Path, lite_path: Path | None = None) -> None:
        super().load(keras_path, spec_path, None)


class PerWindow(Unkept):
    """The project's pyfunc with a request's windows sent through LiteRT one call each, as
    before they were batched (through the same, unrolled flatbuffer)."""

    def load(self, keras_path: Path, spec_path: Path, lite_path: Path | None = None) -> None:
        super().load(keras_path, spec_path, lite_path)
        self.use_network(self._network, 1)


class PredictPerRequest(Unkept):
    """The same network through one Keras `model.predict` a request (all its windows)."""

    def load(self, keras_path: Path, spec_path: Path, lite_path: Path | None = None) -> None:
        super().load(keras_path, spec_path, None)
        net = self.net
        self.use_network(lambda x: net.predict(x, verbose=0), MAX_BATCH)
