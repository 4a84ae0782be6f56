import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation import evaluate
from pipeline.evaluation.evaluate import align, compare, score
from pipeline.evaluation.statistics import diebold_mariano


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


def test_test_days_pair_each_close_with_the_next_days_close() -> None:
    close = [100.0, 110.0, 99.0, 105.0, 104.0]
    feats = pd.DataFrame(
        {
            "Date": pd.bdate_range("2020-01-06", periods=5),
            "Close": close,
            "target": [*np.log(np.array(close[1:]) / np.array(close[:-1])), np.nan],
            "split": ["train", "val", "test", "test", "live"],
        }
    )
    days = evaluate.test_days(feats)  # not imported by name: pytest would collect it
    assert list(days["as_of"]) == list(feats["Date"][2:4])
    assert list(days["for_date"]) == list(feats["Date"][3:5])
    assert list(days["last_close"]) == [99.0, 105.0]
    np.testing.assert_allclose(days["actual"], [105.0, 104.0])


def _days_and_bars(n: int = 300, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    bars = pd.DataFrame({"Date": dates, "Open": open_, "High": high, "Low": low, "Close": close})
    target = np.append(np.diff(np.log(close)), np.nan)
    split = np.array(["train"] * 200 + ["val"] * 40 + ["test"] * (n - 241) + ["live"])
    feats = pd.DataFrame({"Date": dates, "Close": close, "target": target, "split": split})
    return evaluate.test_days(feats), bars, feats


def test_baselines_use_only_returns_known_at_each_close() -> None:
    days, bars, feats = _days_and_bars()
    base = evaluate.baselines(days, bars, feats)
    r = np.diff(np.log(bars["Close"].to_numpy()))
    first = bars.index[bars["Date"] == days["as_of"].iloc[0]][0]  # close index t: returns 1..t
    want = np.std(r[first - 20 : first], ddof=1)
    assert base["naive_"].scale[0] == pytest.approx(want)
    drift = feats.loc[feats["split"] == "train", "target"].mean()
    assert (base["naive_"].loc == drift).all() and (base["ewma_"].loc == drift).all()
    assert np.isfinite(base["ewma_"].scale).all() and (base["ewma_"].scale > 0).all()
    for prefix in ("har_", "garch_"):
        assert np.isfinite(base[prefix].scale).all() and (base[prefix].scale > 0).all()
    # no look-ahead: changing every bar after the first test day changes no first-day forecast
    later = bars["Date"] > days["as_of"].iloc[0]
    shaken = bars.copy()
    shaken.loc[later, ["Open", "High", "Low", "Close"]] *= np.linspace(0.5, 2, int(later.sum()))[
        :, None
    ]
    again = evaluate.baselines(days.assign(last_close=days["last_close"]), shaken, feats)
    for prefix, forecast in base.items():
        assert again[prefix].scale[0] == pytest.approx(forecast.scale[0]), prefix


def test_har_baseline_is_the_range_variance_fit_on_the_days_before_the_test() -> None:
    from pipeline.evaluation import baselines as classical

    days, bars, feats = _days_and_bars()
    har = evaluate.baselines(days, bars, feats)["har_"]
    v = classical.range_variance(*(bars[k].to_numpy() for k in ("Open", "High", "Low", "Close")))
    r_next = np.append(np.diff(np.log(bars["Close"].to_numpy())), np.nan)
    fit = classical.har_fit(v, r_next, np.arange(240))  # the train + val rows
    first = int(np.flatnonzero(bars["Date"] == days["as_of"].iloc[0])[0])
    assert har.scale[0] == pytest.approx(classical.har_sigma(fit, v)[first])
    lower, upper = har.interval(0.8)
    half = fit.quantile(0.8) * har.scale[0]
    assert upper[0] == pytest.approx(days["last_close"].iloc[0] * np.exp(har.loc[0] + half))
    assert lower[0] == pytest.approx(days["last_close"].iloc[0] * np.exp(har.loc[0] - half))


def test_compare_intervals_scores_model_and_both_baselines_on_the_same_days() -> None:
    days, bars, feats = _days_and_bars()
    base = evaluate.baselines(days, bars, feats)
    same_as_naive = pd.DataFrame({"loc": base["naive_"].loc, "scale": base["naive_"].scale})
    out = evaluate.compare_intervals(days, same_as_naive, None, base)
    for who in ("model", "naive", "ewma", "har", "garch"):
        for key in (
            "coverage_80",
            "coverage_95",
            "interval_score_80",
            "interval_score_95",
            "kupiec_pvalue_80",
            "christoffersen_pvalue_95",
            "crps",
            "qlike",
        ):
            assert f"{who}_{key}" in out
    for who in ("ewma", "har", "garch"):
        assert 0 <= out[f"interval_dm_{who}_pvalue"] <= 1
    assert out["best_baseline"] in {"naive", "ewma", "har", "garch"}
    assert out["model_interval_score_80"] == out["naive_interval_score_80"]
    assert out["interval_dm_stat"] == 0.0 and out["interval_dm_pvalue"] == 1.0
    assert "production_coverage_80" not in out  # no production model given
    wide = same_as_naive.assign(scale=same_as_naive["scale"] * 3)
    worse = evaluate.compare_intervals(days, wide, None, base)
    assert worse["model_coverage_95"] >= out["model_coverage_95"]
    assert worse["model_interval_score_80"] > out["model_interval_score_80"]
