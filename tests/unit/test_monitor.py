import datetime as dt
import itertools

import pandas as pd
import pytest

from pipeline import tracking
from pipeline.config import Config
from pipeline.data import store
from pipeline.lifecycle import registry
from pipeline.monitoring import forecast, monitor


def _forecast(
    cfg: Config, as_of: str, for_date: str, model: float, naive: float, **bands: float
) -> None:
    forecast.write(
        cfg,
        {
            **bands,
            "ticker": "GOOG",
            "as_of": as_of,
            "for_date": for_date,
            "model_name": "price_lstm_GOOG",
            "model_version": "1",
            "forecast_close": model,
            "naive_close": naive,
            "created_at": "2013-03-01T22:00:00+00:00",
        },
    )


def _bars(closes: dict[str, float]) -> pd.DataFrame:
    close = list(closes.values())
    return pd.DataFrame(
        {
            "Date": pd.to_datetime(list(closes)),
            "Open": close,
            "High": close,
            "Low": close,
            "Close": close,
            "Volume": 1.0,
        }
    )


def test_rolling_flags_production_only_after_enough_days() -> None:
    table = pd.DataFrame(
        {
            "actual_close": [1.0, 1.0, 1.0, None],
            "model_abs_error": [3.0, 2.0, 2.0, None],
            "naive_abs_error": [1.0, 1.0, 3.0, None],
        }
    )
    assert monitor.rolling(table, 3) == {
        "days": 3,
        "model_mae": 7 / 3,
        "naive_mae": 5 / 3,
        "worse_than_naive": True,
        "worse_days": 2,
        "worse_pvalue": 0.5,  # two of three days: chance
        "losing": False,
        "coverage_days": 0,  # these forecasts had no intervals
        "coverage_drift": False,
    }
    assert monitor.rolling(table, 4)["worse_than_naive"] is False  # only 3 realised days so far
    assert monitor.rolling(table, 1)["worse_than_naive"] is False  # the latest day it won


def test_realise_fills_in_the_days_that_have_been_seen(cfg: Config) -> None:
    _forecast(cfg, "2013-02-28", "2013-03-01", model=101.0, naive=98.0)
    _forecast(cfg, "2013-03-01", "2013-03-04", model=102.0, naive=100.0)
    bars = _bars({"2013-02-28": 98.0, "2013-03-01": 100.0})
    assert monitor.realise(cfg, "GOOG", bars) == 1
    assert monitor.realise(cfg, "GOOG", bars) == 0  # already realised
    table = forecast.read_forecasts(cfg, "GOOG").set_index("as_of")
    seen = table.loc["2013-02-28"]
    assert (seen["actual_close"], seen["model_abs_error"], seen["naive_abs_error"]) == (
        100.0,
        1.0,
        2.0,
    )
    assert table.loc["2013-03-01", ["actual_close", "model_abs_error"]].isna().all()


def test_run_with_nothing_realised_reports_zero_days(cfg: Config) -> None:
    out = monitor.run(cfg, "GOOG", dt.date(2013, 3, 1))
    assert out == {"monitoring": {"days": 0, "drift_checked": False}}


def test_run_flags_production_losing_to_naive_then_clears_it(
    make_cfg, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg: Config = make_cfg(monitoring__window_days=2)
    name = registry.model_name(cfg, "GOOG")
    tracking.client(cfg).create_registered_model(name)
    closes = {"2013-02-26": 100.0, "2013-02-27": 100.0, "2013-02-28": 100.0, "2013-03-01": 100.0}
    store.publish_curated(cfg, "GOOG", _bars(closes), pd.DataFrame(), dt.date(2013, 3, 1))
    _forecast(cfg, "2013-02-26", "2013-02-27", model=103.0, naive=101.0)
    _forecast(cfg, "2013-02-27", "2013-02-28", model=102.0, naive=101.0)

    out = monitor.run(cfg, "GOOG", dt.date(2013, 2, 28))["monitoring"]
    assert out == {
        "days": 2,
        "model_mae": 2.5,
        "naive_mae": 1.0,
        "worse_than_naive": True,
        "worse_days": 2,
        "worse_pvalue": 0.25,
        "losing": False,  # two days cannot tell
        "coverage_days": 0,
        "coverage_drift": False,
        "drift_checked": False,  # no production version to compare the inputs with
    }
    assert "ALERT price_lstm_GOOG" in capsys.readouterr().out
    assert registry.is_production_beatable(cfg, "GOOG")

    _forecast(cfg, "2013-02-28", "2013-03-01", model=100.0, naive=101.0)  # a perfect day
    out = monitor.run(cfg, "GOOG", dt.date(2013, 3, 1))["monitoring"]
    assert out["worse_than_naive"] is False and out["model_mae"] == 1.0
    assert not registry.is_production_beatable(cfg, "GOOG")

    mc = tracking.client(cfg)
    exp = mc.get_experiment_by_name(f"{cfg.tracking.experiment}_monitoring")
    runs = mc.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["for_date"] for r in runs] == ["2013-02-28", "2013-03-01"]
    assert runs[-1].data.metrics["realised_model_abs_error"] == 0.0


def test_realise_records_whether_the_close_fell_inside_the_intervals(cfg: Config) -> None:
    bands = {"lower_80": 99.0, "upper_80": 101.0, "lower_95": 97.0, "upper_95": 103.0}
    _forecast(cfg, "2013-02-26", "2013-02-27", model=100.0, naive=100.0, **bands)
    _forecast(cfg, "2013-02-27", "2013-02-28", model=100.0, naive=100.0, **bands)
    _forecast(cfg, "2013-02-28", "2013-03-01", model=100.0, naive=100.0)  # no intervals
    bars = _bars({"2013-02-27": 100.5, "2013-02-28": 102.0, "2013-03-01": 100.0})
    assert monitor.realise(cfg, "GOOG", bars) == 3
    table = forecast.read_forecasts(cfg, "GOOG").set_index("as_of")
    assert table.loc["2013-02-26", ["inside_80", "inside_95"]].tolist() == [1, 1]
    assert table.loc["2013-02-27", ["inside_80", "inside_95"]].tolist() == [0, 1]
    assert table.loc["2013-02-28", ["inside_80", "inside_95"]].isna().all()


@pytest.mark.parametrize(
    ("hits", "drift"),
    [
        ([1] * 5, False),  # 5 of 5 inside: 100 %, but a 1-in-3 chance for a calibrated 80 %
        ([1, 1, 1, 1, 0], False),  # 80 %
        ([0, 0, 1, 0, 0], True),  # 20 %: p = 0.007
        ([1] * 60, True),  # 100 % of 60: the intervals are far too wide
        ([1, 1, 1, 1, 0] * 12, False),
    ],
)
def test_coverage_drift_needs_the_tolerance_and_significance(hits: list[int], drift: bool) -> None:
    recent = pd.DataFrame({"inside_80": hits})
    out = monitor.coverage_drift(recent, window=5, tolerance=0.05)
    assert out["coverage_drift"] is drift
    assert out["coverage_80"] == pytest.approx(sum(hits) / len(hits))


def test_run_alerts_when_the_intervals_stop_covering(
    make_cfg, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg: Config = make_cfg(monitoring__window_days=5)
    name = registry.model_name(cfg, "GOOG")
    tracking.client(cfg).create_registered_model(name)
    days = pd.bdate_range("2013-02-18", periods=7).strftime("%Y-%m-%d").tolist()
    closes = dict.fromkeys(days, 110.0)  # every close far above every interval
    store.publish_curated(cfg, "GOOG", _bars(closes), pd.DataFrame(), dt.date(2013, 2, 26))
    bands = {"lower_80": 99.0, "upper_80": 101.0, "lower_95": 98.0, "upper_95": 102.0}
    for as_of, for_date in itertools.pairwise(days[:6]):
        _forecast(cfg, as_of, for_date, model=110.0, naive=110.0, **bands)  # point: perfect
    out = monitor.run(cfg, "GOOG", dt.date(2013, 2, 25))["monitoring"]
    assert out["worse_than_naive"] is False and out["coverage_80"] == 0.0
    assert out["coverage_drift"] is True
    said = capsys.readouterr().out
    assert "ALERT price_lstm_GOOG: 80 % intervals covered 0% of the last 5 closes" in said
    assert registry.is_production_beatable(cfg, "GOOG")


def test_only_a_significant_losing_streak_asks_for_a_retrain() -> None:
    lost = pd.DataFrame(
        {"actual_close": [1.0] * 5, "model_abs_error": [2.0] * 5, "naive_abs_error": [1.0] * 5}
    )
    assert monitor.rolling(lost, 5)["losing"] is True  # five of five: p = 1/32
    once_won = lost.assign(model_abs_error=[2.0, 2.0, 0.5, 2.0, 2.0])
    out = monitor.rolling(once_won, 5)
    assert out["worse_than_naive"] is True and out["losing"] is False  # p = 6/32
