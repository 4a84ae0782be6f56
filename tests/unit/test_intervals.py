"""Interval maths against values worked out by hand."""

import math

import numpy as np
import pytest

from pipeline.evaluation.statistics import scores
from pipeline.forecasting import intervals
from pipeline.forecasting.intervals import Forecast


def test_z_values_are_the_normal_quantiles() -> None:
    assert intervals.z_value(0.8) == pytest.approx(1.2815516, abs=1e-6)
    assert intervals.z_value(0.95) == pytest.approx(1.9599640, abs=1e-6)


def test_interval_in_price_is_exp_of_the_return_interval() -> None:
    f = Forecast(np.array([100.0]), np.array([0.01]), np.array([0.02]))
    lower, upper = f.interval(0.95)
    assert lower[0] == pytest.approx(100 * math.exp(0.01 - 1.959964 * 0.02), rel=1e-6)
    assert upper[0] == pytest.approx(100 * math.exp(0.01 + 1.959964 * 0.02), rel=1e-6)


def test_coverage_counts_the_ends_as_inside() -> None:
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    assert intervals.coverage(actual, np.full(4, 2.0), np.full(4, 3.0)) == 0.5


def test_winkler_score_by_hand() -> None:
    # 80 % interval [10, 12]: alpha 0.2, penalty 2/alpha = 10 per unit of miss
    actual = np.array([11.0, 9.0, 12.5])
    got = intervals.interval_score(actual, np.full(3, 10.0), np.full(3, 12.0), 0.8)
    assert got.tolist() == pytest.approx([2.0, 2.0 + 10 * 1.0, 2.0 + 10 * 0.5])


def test_crps_of_a_gaussian_by_hand() -> None:
    # at the centre: sigma * (2 phi(0) - 1/sqrt(pi)) = sigma * (0.797885 - 0.564190)
    assert intervals.crps_gaussian(np.array([0.0]), np.array([0.0]), np.array([1.0]))[
        0
    ] == pytest.approx(0.233695, abs=1e-6)
    # one sigma out, sigma 2: 2 * (1 * (2 * 0.841345 - 1) + 2 * 0.241971 - 0.564190)
    assert intervals.crps_gaussian(np.array([2.0]), np.array([0.0]), np.array([2.0]))[
        0
    ] == pytest.approx(2 * (0.682689 + 0.483941 - 0.564190), abs=1e-5)


def test_pit_and_nll_by_hand() -> None:
    assert intervals.pit(np.array([0.0, 1.0]), np.zeros(2), np.ones(2)).tolist() == pytest.approx(
        [0.5, 0.841345], abs=1e-6
    )
    # N(0, 1) at 0: 0.5 * log(2 pi)
    assert intervals.nll(np.zeros(1), np.zeros(1), np.ones(1)) == pytest.approx(0.918939, abs=1e-6)
    # t(5) at 0: -log(Gamma(3) / (sqrt(5 pi) Gamma(2.5)))
    t0 = math.lgamma(3) - math.lgamma(2.5) - 0.5 * math.log(5 * math.pi)
    assert intervals.nll(np.zeros(1), np.zeros(1), np.ones(1), 5.0) == pytest.approx(-t0)


def test_student_t_quantiles_and_crps_against_integration() -> None:
    assert intervals.z_value(0.8, 5.0) == pytest.approx(1.475884, abs=1e-6)
    assert intervals.z_value(0.95, 5.0) == pytest.approx(2.570582, abs=1e-6)
    from scipy import integrate, stats

    def by_integration(y: float, loc: float, scale: float, df: float) -> float:
        def cdf(x: float) -> float:
            return float(stats.t.cdf((x - loc) / scale, df))

        below, _ = integrate.quad(lambda x: cdf(x) ** 2, -np.inf, y)
        above, _ = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, np.inf)
        return below + above

    for y, loc, scale, df in ((0.3, 0.1, 0.5, 5.0), (-2.0, 0.0, 1.0, 3.0)):
        got = intervals.crps_student_t(np.array([y]), np.array([loc]), np.array([scale]), df)
        assert got[0] == pytest.approx(by_integration(y, loc, scale, df), rel=1e-5)


def test_trailing_std_uses_only_returns_up_to_the_day() -> None:
    r = np.array([0.01, -0.01, 0.03, 0.0, 0.02])
    got = intervals.trailing_std(r, window=3)
    assert np.isnan(got[:2]).all()
    assert got[2] == pytest.approx(np.std([0.01, -0.01, 0.03], ddof=1))
    assert got[4] == pytest.approx(np.std([0.03, 0.0, 0.02], ddof=1))
    r2 = r.copy()
    r2[4] = 0.5  # a later return does not change an earlier forecast
    assert intervals.trailing_std(r2, window=3)[3] == got[3]


def test_ewma_follows_the_riskmetrics_recursion() -> None:
    r = np.array([0.01, -0.01, 0.02, 0.05])
    got = intervals.ewma_std(r, lam=0.94, seed=2)
    var0 = np.var([0.01, -0.01], ddof=1)  # 0.0002
    assert np.isnan(got[0])
    assert got[1] == pytest.approx(math.sqrt(var0))
    var2 = 0.94 * var0 + 0.06 * 0.02**2
    assert got[2] == pytest.approx(math.sqrt(var2))
    assert got[3] == pytest.approx(math.sqrt(0.94 * var2 + 0.06 * 0.05**2))


def test_scores_names_and_a_calibrated_forecast_covers_its_level() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    last = np.full(n, 100.0)
    r = rng.normal(0.001, 0.02, n)
    f = Forecast(last, np.full(n, 0.001), np.full(n, 0.02))
    got = scores(last * np.exp(r), f, "model_")
    assert set(got) == {
        "model_coverage_80",
        "model_coverage_95",
        "model_interval_score_80",
        "model_interval_score_95",
        "model_crps",
        "model_nll",
        "model_qlike",
        *(f"model_{t}_pvalue_{p}" for t in ("kupiec", "christoffersen") for p in (80, 95)),
    }
    assert got["model_coverage_80"] == pytest.approx(0.8, abs=0.01)
    assert got["model_coverage_95"] == pytest.approx(0.95, abs=0.01)
    # too narrow an interval covers less and scores worse
    narrow = scores(last * np.exp(r), Forecast(last, f.loc, f.scale / 2), "n_")
    assert narrow["n_coverage_80"] < 0.6
    assert narrow["n_interval_score_80"] > got["model_interval_score_80"]


def test_empirical_crps_matches_the_sample_definition() -> None:
    """CRPS of loc + scale * Z, Z uniform on a sample: E|X - r| - E|X - X'| / 2, by brute force."""
    rng = np.random.default_rng(3)
    z = np.sort(rng.standard_t(5, 200))
    r, loc, scale = rng.normal(0, 0.02, 7), np.full(7, 0.001), rng.uniform(0.01, 0.03, 7)
    got = intervals.crps_empirical(r, loc, scale, z)
    for i in range(7):
        x = loc[i] + scale[i] * z
        want = np.mean(np.abs(x - r[i])) - np.mean(np.abs(x[:, None] - x[None, :])) / 2
        assert got[i] == pytest.approx(want, rel=1e-9)


def test_an_empirical_forecast_takes_its_interval_from_the_sample_quantiles() -> None:
    z = np.sort(np.random.default_rng(4).standard_normal(1001))
    f = Forecast(np.array([100.0]), np.array([0.0]), np.array([0.02]), empirical=z)
    lower, upper = f.interval(0.8)
    half = np.quantile(np.abs(z), 0.8) * 0.02
    assert upper[0] == pytest.approx(100 * np.exp(half))
    assert lower[0] == pytest.approx(100 * np.exp(-half))
    assert f.variance()[0] == pytest.approx(0.02**2 * np.mean(z**2))
    assert "model_nll" not in scores(np.array([101.0]), f, "model_")  # no density
