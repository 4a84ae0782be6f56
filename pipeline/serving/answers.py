"""The served model, as the guard hands it to MLflow's `invocations`, and what MLflow says of it.

`Reasons` wraps the loaded pyfunc: its table answers become the JSON-ready records MLflow
would have made of them (`answer_records`, without pandas' per-column cost), and on a
refusal it notes the model's own reason before MLflow prefixes the whole request frame to
it, so `mlflow_reason` can give that reason back, without the frame or MLflow's protocol
notice. `answer_as_records` tells a Python model that can answer as records to do so.
"""

from __future__ import annotations

from typing import Any

_REASON = "_pipeline_reason"  # the model's own message, before MLflow quotes the frame on it


def mlflow_reason(exc: Exception) -> str:
    """An MlflowException's message without the request MLflow quotes back in it."""
    from mlflow.pyfunc.scoring_server import SCORING_PROTOCOL_CHANGE_INFO

    message = str(getattr(exc, _REASON, None) or getattr(exc, "message", None) or exc)
    if message.startswith("Failed to enforce schema") and exc.__context__ is not None:
        message = f"Failed to enforce schema: {exc.__context__}"  # not the frame, the reason
    elif message.startswith("Failed to predict data '") and "\nError: " in message:
        message = message.rsplit("\nError: ", 1)[1]
    message = message.replace(SCORING_PROTOCOL_CHANGE_INFO, "").strip()
    return message.split("\nInput: ")[0].strip()  # JSON errors echo the whole body


def answer_records(answer: Any) -> Any:
    """A table answer as the records MLflow's `invocations` would make of it
    (`to_dict(orient="records")`, the same JSON), without pandas' per-column indexing:
    0.8 ms of a one-row, eleven-column answer, several times what the model itself costs.
    Anything else (a table with repeated column names, or with extension types whose
    missing values to_dict words its own way) is left to MLflow."""
    import numpy as np
    import pandas as pd

    if not isinstance(answer, pd.DataFrame) or not answer.columns.is_unique:
        return answer
    plain = (
        isinstance(t, np.dtype) or (isinstance(t, pd.StringDtype) and t.na_value is np.nan)
        for t in answer.dtypes
    )
    if not all(plain):
        return answer
    columns = answer.columns.tolist()
    return [dict(zip(columns, row, strict=True)) for row in answer.to_numpy(dtype=object).tolist()]


class Reasons:
    """The served pyfunc, noting the model's own reason on a refusal before MLflow's
    `invocations` prefixes the whole frame to it, its table answers made records here."""

    def __init__(self, model: Any):
        self.model = model
        self.metadata = model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return answer_records(self.model.predict(data, params=params))
        except MlflowException as exc:
            setattr(exc, _REASON, mlflow_reason(exc))
            raise


def answer_as_records(model: Any) -> None:
    """A Python model that can answer as JSON-ready records (a class attribute
    `answers_as_records`) is told to: a DataFrame answer would only be taken apart again."""
    from mlflow.exceptions import MlflowException

    try:
        python_model = model.unwrap_python_model()
    except (MlflowException, AttributeError):  # another flavour: its answers as they come
        return
    if hasattr(type(python_model), "answers_as_records"):
        python_model.answers_as_records = True
