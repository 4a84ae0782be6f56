import numpy as np
import pandas as pd
import pytest

from pipeline.data.bars import COLUMNS
from pipeline.data.features import FEATURES, assign_splits, make_features
from pipeline.forecasting.forecaster import OUTPUT_COLUMNS
from pipeline.forecasting.model import LSTMParams
from pipeline.forecasting.train import fit_final, input_example, request_signature
from tests.helpers import random_walk_bars


def _bars(n: int = 120) -> pd.DataFrame:
    return random_walk_bars(n, seed=1, start="2021-03-01")


def test_input_example_is_the_last_rows_with_text_dates() -> None:
    bars = _bars()
    example = input_example(bars, 7)
    assert len(example) == 7 and list(example.index) == list(range(7))
    assert list(example["Date"]) == [f"{d:%Y-%m-%d}" for d in bars["Date"].tail(7)]
    assert example["Close"].tolist() == bars["Close"].tail(7).tolist()
    assert bars["Date"].dtype.kind == "M"  # the caller's frame is left as it was


def test_fit_final_returns_a_trained_net_and_its_preprocessing() -> None:
    feats = make_features(_bars(), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5, batch_size=64)
    model, prep = fit_final(params, feats, epochs=0, seed=0)  # 0 epochs still trains once
    assert prep.window == 5 and model.input_shape == (None, 5, len(FEATURES))
    x, _ = prep.windows("test")
    out = np.asarray(model(x, training=False))
    assert out.shape == (prep.count("test"), 2)  # location and raw scale
    assert out[:, 1].std() > 0  # trained: the scale now depends on the window
    assert not out[:, 0].any()  # the location stays at the training-mean return


def test_fit_final_trains_on_a_budget_of_windows_per_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each epoch of the final fit sees `windows_per_epoch` of the train and validation
    windows, never a test one."""
    from pipeline.forecasting import sampling

    feats = make_features(_bars(200), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    epochs: list[np.ndarray] = []
    original = sampling.EpochRows.next

    def recorded(self: sampling.EpochRows) -> np.ndarray:
        epochs.append(original(self))
        return epochs[-1]

    monkeypatch.setattr(sampling.EpochRows, "next", recorded)
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5, batch_size=16)
    _, prep = fit_final(params, feats, epochs=2, seed=0, windows_per_epoch=40)
    allowed = set(prep.rows["train"]) | set(prep.rows["val"])
    assert len(epochs) >= 2 and all(len(e) == 40 and set(e) <= allowed for e in epochs)


def test_request_signature_leaves_the_input_check_to_the_model() -> None:
    example = input_example(_bars(), 3)
    output = pd.DataFrame(
        [
            {
                "as_of": "2021-08-13",
                "for_date": "2021-08-16",
                "last_close": 1.0,
                "forecast_close": 1.0,
                "forecast_return": 0.0,
                "lower_80": 0.9,
                "upper_80": 1.1,
                "lower_95": 0.8,
                "upper_95": 1.2,
                "scale": 0.02,
                "model_version": "1",
            }
        ]
    )
    sig = request_signature(example, output)
    # no input schema: MLflow would check each cell in Python before the model's own,
    # clearer check (forecaster.check_bars); the logged input example shows the columns
    assert sig.inputs is None
    assert list(example.columns) == COLUMNS
    assert sig.outputs.input_names() == OUTPUT_COLUMNS
