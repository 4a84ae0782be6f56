"""Adaptive conformal widths: the recursion, no look-ahead, calibration on a misspecified
forecaster, and the server computing what the evaluation and the backtest compute."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.data.features import FEATURES, assign_splits, make_features, prepare
from pipeline.forecasting import conformal
from pipeline.forecasting.forecaster import PriceForecaster
from pipeline.forecasting.intervals import Forecast, coverage, z_value
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.forecasting.spec import preprocessing_spec


def reference_factor(errors: np.ndarray, q: float, level: float, step: float) -> float:
    """Gibbs & Candès' update written out, in the width's log."""
    log_f = 0.0
    for e in errors:
        miss = 1.0 if e > q * math.exp(log_f) else 0.0
        log_f += step * (miss - (1 - level))
    return math.exp(log_f)


def test_each_days_factor_is_the_recursion_over_its_lookback_only() -> None:
    errors = np.abs(np.random.default_rng(1).standard_t(4, 300))
    errors[17] = np.nan  # an outcome not known: skipped
    got = conformal.adaptive_factors(errors, 1.3, 0.8, 0.05, 40)
    for t in (0, 1, 17, 18, 39, 40, 41, 299):
        past = errors[max(0, t - 40) : t]
        want = reference_factor(past[np.isfinite(past)], 1.3, 0.8, 0.05)
        assert got[t] == pytest.approx(want, rel=1e-12)
        assert conformal.final_factor(past.tolist(), 1.3, 0.8, 0.05) == pytest.approx(want)
    # no look-ahead: changing day t's outcome and later ones leaves factors up to t alone
    shaken = errors.copy()
    shaken[150:] *= 10
    again = conformal.adaptive_factors(shaken, 1.3, 0.8, 0.05, 40)
    np.testing.assert_array_equal(again[:151], got[:151])
    assert not np.array_equal(again[151:], got[151:])
    # misses widen, hits narrow; off is all ones
    assert conformal.adaptive_factors(np.full(10, 9.0), 1.3, 0.8, 0.05, 40)[-1] > 1
    assert conformal.adaptive_factors(np.zeros(10), 1.3, 0.8, 0.05, 40)[-1] < 1
    assert (conformal.adaptive_factors(errors, 1.3, 0.8, 0.0, 40) == 1).all()


def test_a_forecaster_too_wide_then_too_narrow_is_brought_to_its_level() -> None:
    """Returns whose volatility doubles half-way, forecast with one fixed scale: the raw
    80 % intervals cover about 97 % then 67 %; the adaptive ones about 80 % in each half."""
    rng = np.random.default_rng(7)
    n = 4000
    sigma = np.where(np.arange(n) < n // 2, 0.01, 0.02)
    r = sigma * rng.standard_normal(n)
    f = Forecast(np.full(n, 100.0), np.zeros(n), np.full(n, 0.015))
    actual = 100 * np.exp(r)
    calibrated = conformal.calibrate(f, r, conformal.STEP, conformal.LOOKBACK)
    for half in (slice(250, n // 2), slice(n // 2 + 250, n)):
        raw = coverage(actual[half], *(b[half] for b in f.interval(0.8)))
        adapted = coverage(actual[half], *(b[half] for b in calibrated.interval(0.8)))
        assert abs(raw - 0.8) > 0.12
        assert abs(adapted - 0.8) < 0.03, (raw, adapted)


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame):
    """An untrained tiny network whose version carries the adaptive widths (lookback 33)."""
    feats = make_features(sample_bars.tail(150).reset_index(drop=True), 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    prep = prepare(feats, window=5, base="trailing")
    tmp = tmp_path_factory.mktemp("calibrated")
    build_model(LSTMParams(units=4, window=5), len(FEATURES)).save(tmp / "network.keras")
    spec = preprocessing_spec(
        5, 5, 5, prep.x_scaler, prep.y_scaler, "XNYS", 500, None, prep.base, conformal.spec(0.1, 33)
    )
    (tmp / "preprocessing.json").write_text(json.dumps(spec))
    model = PriceForecaster()
    model.load(tmp / "network.keras", tmp / "preprocessing.json")
    return model


def served_factor(row: pd.Series, level: int) -> float:
    """The served interval's half-width over the unadjusted one."""
    half = math.log(row[f"upper_{level}"] / row["last_close"]) - row["forecast_return"]
    return half / (z_value(level / 100, 5.0) * row["scale"])


def test_the_server_widens_as_the_evaluation_does_from_the_bars_a_request_carries(
    calibrated_model: PriceForecaster, sample_bars: pd.DataFrame
) -> None:
    bars = sample_bars.tail(100).reset_index(drop=True)
    served = calibrated_model.predict(None, bars).iloc[0]
    evaluated = calibrated_model.forecast_all(bars).iloc[-1]
    for level in (80, 95):
        assert evaluated[f"factor_{level}"] != pytest.approx(1.0)
        assert served_factor(served, level) == pytest.approx(evaluated[f"factor_{level}"])
    # the fewest rows a request may carry: no earlier session to learn from, factor 1
    shortest = calibrated_model.predict(None, bars.tail(27)).iloc[0]
    assert served_factor(shortest, 80) == pytest.approx(1.0)
    # a request with fewer extra rows than the lookback uses the sessions it has
    some = bars.tail(27 + 10)
    part = calibrated_model.forecast_all(some.reset_index(drop=True)).iloc[-1]
    assert served_factor(calibrated_model.predict(None, some).iloc[0], 80) == pytest.approx(
        part["factor_80"]
    )
