import numpy as np
import optuna
import pandas as pd
import pytest

from pipeline.config import SearchSpace
from pipeline.evaluate import align, compare, diebold_mariano, score
from pipeline.forecaster import BadInput, check_bars
from pipeline.registry import decide
from pipeline.tune import suggest_params


def test_naive_scores_one_and_a_half() -> None:
    actual, last = np.array([101.0, 99.0, 102.0]), np.array([100.0, 101.0, 99.0])
    naive = score(actual, last, last)
    assert naive.mase == 1.0 and naive.directional_accuracy == 0.5
    assert naive.mae == pytest.approx(np.mean([1, 2, 3]))
    perfect = score(actual, actual, last)
    assert perfect.mae == 0 and perfect.mase == 0 and perfect.directional_accuracy == 1.0


def test_diebold_mariano_tells_edge_from_noise() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 500)
    assert diebold_mariano(base, base) == (0.0, 1.0)
    stat, p = diebold_mariano(base * 0.5, base)
    assert stat < 0 and p < 0.001
    stat, p = diebold_mariano(base + rng.normal(0, 0.01, 500), base)
    assert p > 0.01


def test_compare_scores_all_models_on_the_same_days() -> None:
    days = pd.DataFrame(
        {
            "as_of": pd.bdate_range("2020-01-01", periods=3),
            "for_date": pd.bdate_range("2020-01-02", periods=3),
            "last_close": [100.0, 101.0, 99.0],
            "actual": [101.0, 99.0, 102.0],
        }
    )
    out = compare(days, np.array([100.5, 100.0, 100.0]), np.array([100.0, 101.0, 99.0]))
    assert out["naive_mase"] == 1.0 and out["production_mase"] == 1.0
    assert out["first_test_date"] == "2020-01-02" and out["test_days"] == 3
    with pytest.raises(ValueError, match="no forecast"):
        align(days, pd.DataFrame({"as_of": days["as_of"][:2], "forecast_close": [1.0, 2.0]}))


@pytest.mark.parametrize(
    ("ev", "beatable", "promote", "why"),
    [
        ({"model_mase": 1.01, "model_mae": 6.6}, False, False, "does not beat"),
        ({"model_mase": 0.99, "model_mae": 6.5}, False, True, "no production"),
        ({"model_mase": 0.99, "model_mae": 6.5, "production_mae": 6.4}, False, False, "worse"),
        ({"model_mase": 0.99, "model_mae": 6.5, "production_mae": 6.4}, True, True, "losing"),
        (
            {"model_mase": 0.99, "model_mae": 6.3, "production_mae": 6.4},
            False,
            True,
            "and production",
        ),
    ],
)
def test_gate(ev: dict, beatable: bool, promote: bool, why: str) -> None:
    decision = decide(ev, naive_margin=0.0, tolerance=0.0, production_beatable=beatable)
    assert decision.promote is promote and why in decision.reason


def test_gate_margin() -> None:
    assert not decide({"model_mase": 0.99, "model_mae": 1}, naive_margin=0.02, tolerance=0).promote


def test_search_space_is_a_plain_function_of_the_trial() -> None:
    space = SearchSpace()
    trial = optuna.trial.FixedTrial(
        {
            "units": 64,
            "layers": 2,
            "dropout": 0.2,
            "learning_rate": 1e-3,
            "window": 40,
            "batch_size": 32,
        }
    )
    params = suggest_params(trial, space)
    assert (params.units, params.layers, params.window, params.batch_size) == (64, 2, 40, 32)


def _bars(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Date": [f"2020-01-{d:02d}" for d in range(1, n + 1)],
            "Open": 1.0,
            "High": 2.0,
            "Low": 0.5,
            "Close": 1.5,
            "Volume": 10.0,
        }
    )


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b.drop(columns="Close"), "missing column"),
        (lambda b: b.head(3), "needs at least 5"),
        (lambda b: b.assign(Close=[1.5, np.nan, 1.5, 1.5, 1.5, 1.5]), "Close must be a number"),
        (lambda b: b.assign(Open=["1", "x", "1", "1", "1", "1"]), "Open must be a number"),
        (lambda b: b.assign(Date=b["Date"][::-1].to_numpy()), "increasing order"),
        (lambda b: b.assign(Date=["2020-01-01"] * 6), "duplicate dates"),
        (lambda b: b.assign(Date="yesterday"), "YYYY-MM-DD"),
        (lambda b: b.assign(Low=-1.0), "prices must be > 0"),
    ],
)
def test_request_rows_are_checked(mangle, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        check_bars(mangle(_bars(6)), needed=5)
    assert len(check_bars(_bars(6), needed=5)) == 6


def test_rolling_flags_production_only_after_enough_days() -> None:
    from pipeline.monitor import rolling

    table = pd.DataFrame(
        {
            "actual_close": [1.0, 1.0, 1.0, None],
            "model_abs_error": [3.0, 2.0, 2.0, None],
            "naive_abs_error": [1.0, 1.0, 3.0, None],
        }
    )
    assert rolling(table, 3) == {
        "days": 3,
        "model_mae": 7 / 3,
        "naive_mae": 5 / 3,
        "worse_than_naive": True,
    }
    assert rolling(table, 4)["worse_than_naive"] is False  # only 3 realised days so far
    assert rolling(table, 1)["worse_than_naive"] is False  # the latest day it won
