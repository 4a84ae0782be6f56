"""Classical volatility baselines and coverage tests against hand computations and arch."""

import math

import numpy as np
import pytest

from pipeline.evaluation import baselines, statistics
from pipeline.evaluation.baselines import HarFit

GK = 2 * math.log(2) - 1  # Garman-Klass weight of the squared open-to-close return


def test_range_variance_by_hand() -> None:
    o = np.array([100.0, 103.0, 104.0, 104.0])
    h = np.array([104.0, 106.0, 104.0, 104.0])
    lo = np.array([98.0, 101.0, 104.0, 104.0])
    c = np.array([102.0, 105.0, 104.0, 104.0])
    got = baselines.range_variance(o, h, lo, c)
    # day 0: no previous close, Garman-Klass only
    assert got[0] == pytest.approx(
        0.5 * math.log(104 / 98) ** 2 - GK * math.log(102 / 100) ** 2, rel=1e-12
    )
    # day 1: overnight gap 102 -> 103, then Garman-Klass of the bar
    assert got[1] == pytest.approx(
        math.log(103 / 102) ** 2 + 0.5 * math.log(106 / 101) ** 2 - GK * math.log(105 / 103) ** 2,
        rel=1e-12,
    )
    # day 2: a flat bar, only the gap 105 -> 104; day 3: nothing moved, the floor
    assert got[2] == pytest.approx(math.log(104 / 105) ** 2, rel=1e-12)
    assert got[3] == baselines.VARIANCE_FLOOR


def _means(v: np.ndarray, t: int) -> list[float]:
    """The HAR regressors of day t, written out."""
    return [
        1.0,
        math.log(v[t]),
        math.log(np.mean(v[t - 4 : t + 1])),
        math.log(np.mean(v[t - 21 : t + 1])),
    ]


def test_har_regressors_by_hand() -> None:
    v = np.random.default_rng(0).lognormal(-9, 0.5, 40)
    x = baselines.har_regressors(v)
    assert x.shape == (40, 4)
    assert np.isnan(x[:21]).all()
    for t in (21, 30, 39):
        assert x[t].tolist() == pytest.approx(_means(v, t), rel=1e-12)


def test_har_fit_recovers_exact_coefficients() -> None:
    # On the odd days the next variance is exactly the HAR forecast; the even days get
    # random variances so the regressors are not collinear. Fitting on the odd days only
    # must give the coefficients back, with no residual (smearing 1).
    true = np.array([-1.2, 0.45, 0.3, 0.12])
    rng = np.random.default_rng(1)
    n = 300
    v = rng.lognormal(-9, 0.6, n)
    for t in range(21, n - 1):
        if t % 2:
            v[t + 1] = math.exp(float(np.dot(_means(v, t), true)))
    odd = np.arange(n) % 2 == 1
    r_next = rng.normal(0, 0.01, n)
    fit = baselines.har_fit(v, r_next, odd)
    assert fit.coef == pytest.approx(true, abs=1e-9)
    assert fit.smearing == pytest.approx(1.0, abs=1e-12)
    same = baselines.har_fit(v, r_next, np.flatnonzero(odd))  # indices, not a mask
    assert same.coef == pytest.approx(fit.coef, abs=1e-12)


def test_har_fit_smearing_and_quantile_by_hand() -> None:
    rng = np.random.default_rng(2)
    n = 200
    v = rng.lognormal(-9, 0.7, n)
    r_next = rng.normal(0, 0.012, n)
    r_next[-1] = np.nan  # the last day's next return is not known yet
    fit = baselines.har_fit(v, r_next, np.ones(n, dtype=bool))
    t = np.arange(21, n - 1)  # regressors known and a next day to predict
    x = np.array([_means(v, i) for i in t])
    y = np.log(v[t + 1])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    assert fit.coef == pytest.approx(coef, rel=1e-9)
    smearing = float(np.mean(np.exp(y - x @ coef)))
    assert fit.smearing == pytest.approx(smearing, rel=1e-12)
    z = np.sort(r_next[t] / np.sqrt(np.exp(x @ coef) * smearing))
    assert fit.residuals == pytest.approx(z, rel=1e-9)
    for level in (0.8, 0.95):
        assert fit.quantile(level) == pytest.approx(np.quantile(np.abs(z), level), rel=1e-12)


def test_har_sigma_by_hand() -> None:
    v = np.random.default_rng(3).lognormal(-9, 0.5, 30)
    fit = HarFit(coef=np.array([-0.8, 0.4, 0.3, 0.2]), smearing=1.1, residuals=np.zeros(1))
    sigma = baselines.har_sigma(fit, v)
    assert np.isnan(sigma[:21]).all()
    log_v = -0.8 + 0.4 * _means(v, 25)[1] + 0.3 * _means(v, 25)[2] + 0.2 * _means(v, 25)[3]
    assert sigma[25] == pytest.approx(math.sqrt(math.exp(log_v) * 1.1), rel=1e-12)


def _gjr_returns(n: int) -> np.ndarray:
    """Daily log returns from a GJR-GARCH(1,1)-t (in percent: mu 0.05, omega 0.02, alpha
    0.03, gamma 0.08, beta 0.9, nu 6), so the fit has something to find."""
    rng = np.random.default_rng(4)
    z = rng.standard_t(6, n) * math.sqrt(4 / 6)  # unit variance
    out, var, e = np.empty(n), 0.02 / (1 - 0.03 - 0.04 - 0.9), 0.0
    for t in range(n):
        var = 0.02 + (0.03 + 0.08 * (e < 0)) * e**2 + 0.9 * var
        e = math.sqrt(var) * z[t]
        out[t] = (0.05 + e) / 100
    return out


def test_gjr_garch_against_arch_and_its_recursion() -> None:
    from arch import arch_model
    from scipy import stats

    r = _gjr_returns(1000)
    fit_rows = 700
    sigma, mu, nu = baselines.gjr_garch_sigma(r, fit_rows)
    res = arch_model(100 * r, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t").fit(
        last_obs=fit_rows, disp="off"
    )
    p = res.params
    assert mu == pytest.approx(p["mu"] / 100, rel=1e-9)
    assert nu == pytest.approx(p["nu"], rel=1e-9)
    assert np.isnan(sigma[: fit_rows - 1]).all() and np.isfinite(sigma[fit_rows - 1 :]).all()
    # the GJR recursion by hand, from arch's in-sample variance at the last fitting day
    e = 100 * r - p["mu"]
    var = res.conditional_volatility[fit_rows - 1] ** 2
    for t in range(fit_rows - 1, fit_rows + 5):
        var = (
            p["omega"]
            + (p["alpha[1]"] + p["gamma[1]"] * (e[t] < 0)) * e[t] ** 2
            + (p["beta[1]"] * var)
        )
        assert sigma[t] == pytest.approx(math.sqrt(var) / 100, rel=1e-9)
    # and arch's own forecast for the last origin
    last = res.forecast(horizon=1, start=len(r) - 1, reindex=False).variance.iloc[-1, 0]
    assert sigma[-1] == pytest.approx(math.sqrt(last) / 100, rel=1e-9)
    for level in (0.8, 0.95):
        for df in (nu, 5.0):
            assert baselines.standardized_t_quantile(level, df) == pytest.approx(
                stats.t.ppf(0.5 + level / 2, df) * math.sqrt((df - 2) / df), rel=1e-9
            )


def _chi2_1_sf(x: float) -> float:
    return math.erfc(math.sqrt(x / 2))


HITS = np.ones(20, dtype=bool)
HITS[[2, 3, 9, 14, 15]] = False  # 5 misses, two of them in pairs


def test_kupiec_by_hand() -> None:
    # 80 % interval: nominal miss rate 0.2, observed 5/20 = 0.25
    null = 15 * math.log(0.8) + 5 * math.log(0.2)
    alt = 15 * math.log(0.75) + 5 * math.log(0.25)
    stat, pvalue = statistics.kupiec(HITS, 0.8)
    assert stat == pytest.approx(-2 * (null - alt), rel=1e-12)
    assert pvalue == pytest.approx(_chi2_1_sf(-2 * (null - alt)), rel=1e-9)
    # no misses / all misses: the observed-rate likelihood is 1 (log 0)
    assert statistics.kupiec(np.ones(20, dtype=bool), 0.8)[0] == pytest.approx(-40 * math.log(0.8))
    assert statistics.kupiec(np.zeros(20, dtype=bool), 0.8)[0] == pytest.approx(-40 * math.log(0.2))


def test_christoffersen_by_hand() -> None:
    # transitions over the 19 pairs: hit->hit 11, hit->miss 3, miss->hit 3, miss->miss 2
    null = 14 * math.log(14 / 19) + 5 * math.log(5 / 19)
    alt = 11 * math.log(11 / 14) + 3 * math.log(3 / 14) + 3 * math.log(3 / 5) + 2 * math.log(2 / 5)
    stat, pvalue = statistics.christoffersen(HITS)
    assert stat == pytest.approx(-2 * (null - alt), rel=1e-12)
    assert pvalue == pytest.approx(_chi2_1_sf(-2 * (null - alt)), rel=1e-9)


@pytest.mark.parametrize(
    "hits",
    [np.ones(20, dtype=bool), np.zeros(20, dtype=bool), np.array([True] * 19 + [False])],
)
def test_coverage_tests_are_finite_at_the_extremes(hits: np.ndarray) -> None:
    for stat, pvalue in (statistics.kupiec(hits, 0.95), statistics.christoffersen(hits)):
        assert math.isfinite(stat) and stat >= 0
        assert 0 <= pvalue <= 1


def test_qlike() -> None:
    r = np.array([0.01, -0.02, 0.0])
    assert statistics.qlike(r[:2], r[:2] ** 2) == pytest.approx([0.0, 0.0], abs=1e-12)
    off = statistics.qlike(r, np.array([2e-4, 1e-4, 1e-4]))
    assert np.isfinite(off).all() and (off > 0).all()
    # by hand: r2/var = 0.5
    assert off[0] == pytest.approx(0.5 - math.log(0.5) - 1, rel=1e-12)
