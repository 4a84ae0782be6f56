"""The day's report from the journal, and the retrain plan from events, a request or the
calendar (the DAG runs themselves: tests/integration/test_dag_run.py)."""

import datetime as dt
from types import SimpleNamespace

from pipeline import schedule
from pipeline.monitoring.drift import input_drift, outside_share, psi
from pipeline.operations import daily, day_table, retrain
from pipeline.orchestration import journal

DAY = dt.date(2013, 3, 1)


def test_batched_events_are_read_together_and_refit() -> None:
    events = {
        "asset": [
            SimpleNamespace(extra={"day": "2013-02-28", "reasons": {"GOOG": ["input_drift"]}}),
            SimpleNamespace(
                extra={"day": "2013-03-01", "reasons": {"GOOG": ["beatable"], "IBM": ["beatable"]}}
            ),
        ]
    }
    p = retrain.plan(_cfg(), events, {}, dt.date(2013, 3, 4))
    assert p == {
        "day": "2013-03-01",  # the newest event's day, not the run's
        "trigger": "evidence",
        "reasons": {"GOOG": ["input_drift", "beatable"], "IBM": ["beatable"]},
        "mode": "refit",
    }


def test_the_weekly_run_tunes_for_the_last_session() -> None:
    p = retrain.plan(_cfg(), None, None, dt.date(2013, 3, 2))  # a Saturday
    assert p == {"day": "2013-03-01", "trigger": "weekly", "reasons": {}, "mode": "tune"}
    asked = retrain.plan(
        _cfg(), None, {"reasons": {"MSFT": ["no_production"]}, "mode": "tune"}, DAY
    )
    assert asked["trigger"] == "evidence" and asked["mode"] == "tune"
    assert retrain.summary(p) == "weekly (tunes)"


def _cfg():  # type: ignore[no-untyped-def]
    from pipeline.config import load_config

    return load_config(environ={})


def test_the_report_says_per_ticker_what_happened_and_why_to_retrain(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=["AAPL", "GOOG", "IBM"])
    row = {"naive_close": 430.47, "forecast_close": 431.0, "lower_80": 420.0, "upper_80": 440.0}
    row["model_version"] = "3"
    drifted = {"coverage_drift": True, "drift_outside_max": 0.2, "input_drift": True}
    for ticker, steps in (
        ("AAPL", [("monitor", {"monitoring": {}}), ("forecast", {"forecast": row})]),
        ("GOOG", [("monitor", {"monitoring": drifted}), ("forecast", {"forecast": row})]),
    ):
        for task, out in steps:
            journal.record(cfg, schedule.DAILY, DAY, event="end", task=task, ticker=ticker, out=out)
    journal.record(
        cfg, schedule.DAILY, DAY, event="failed", task="validate", ticker="IBM",
        error="validation: high_is_highest", rule="quarantined",
    )  # fmt: skip
    rep = daily.report(cfg, DAY)
    statuses = {t: r["status"] for t, r in rep["tickers"].items()}
    assert statuses == {"AAPL": "forecast", "GOOG": "forecast", "IBM": "quarantined"}
    assert rep["tickers"]["GOOG"]["alerts"] == ["coverage_drift", "input_drift"]
    assert rep["tickers"]["AAPL"]["last_close"] == 430.47
    # nothing is registered in this store: every ticker lacks a production model too
    assert rep["retrain"]["GOOG"] == ["no_production", "coverage_drift", "input_drift"]
    assert daily.failed_tickers(rep) == ["IBM"]
    assert daily.report_path(cfg, DAY).is_file()
    text = day_table.table(rep, "after the day")
    assert "[420.00, 440.00]" in text and "quarantined (validation: high_is_highest)" in text
    assert "interval coverage drifted (GOOG)" in schedule.why(rep["retrain"])


def test_drift_fires_only_when_inputs_leave_the_training_range() -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    same = rng.standard_normal(2000)
    assert outside_share(same[:1500], same[1500:]) < 0.03
    assert outside_share(same[:1500], 3 * same[1500:]) > 0.2
    assert psi(same[:1500], same[1500:]) < 0.05 < psi(same[:1500], 3 * same[1500:])
    days = pd.bdate_range("2010-01-01", periods=600)
    cols = ("log_ret", "range", "body", "gap", "volume_z", "rv_d")
    calm = pd.DataFrame({"Date": days, **{c: rng.standard_normal(600) for c in cols}})
    stormy = calm.copy()
    stormy.loc[stormy.index[-63:], "range"] *= 4
    end = days[500].date()
    assert input_drift(calm, end, 63, 0.1)["input_drift"] is False
    fired = input_drift(stormy, end, 63, 0.1)
    assert fired["input_drift"] is True and fired["drift_feature"] == "range"
    assert input_drift(calm, days[-10].date(), 63, 0.1)["drift_checked"] is False  # too few


def test_a_holiday_reports_no_session_and_asks_for_nothing(make_cfg) -> None:  # type: ignore[no-untyped-def]
    rep = daily.report(make_cfg(), dt.date(2012, 12, 25))
    assert rep == {"day": "2012-12-25", "session": False, "tickers": {}, "retrain": {}}


def test_days_that_cannot_run_are_refused_before_anything_runs(make_cfg) -> None:  # type: ignore[no-untyped-def]
    from pipeline.operations import operate

    cfg, today = make_cfg(), dt.date(2026, 11, 30)
    assert "in the future" in str(operate.day_problem(cfg, dt.date(9999, 12, 31), today))
    assert "before the DAGs' start" in str(operate.day_problem(cfg, dt.date(1999, 12, 31), today))
    assert operate.day_problem(cfg, DAY, today) is None


def test_evidence_a_recent_retrain_answered_is_not_asked_again(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=["GOOG"])
    drifted = {"monitoring": {"coverage_drift": True, "input_drift": True}}
    journal.record(
        cfg, schedule.DAILY, DAY, event="end", task="monitor", ticker="GOOG", out=drifted
    )
    asked = {"day": "2013-02-27", "trigger": "evidence", "mode": "refit"}
    retrain.record_plan(cfg, {**asked, "reasons": {"GOOG": ["coverage_drift"]}})
    rep = daily.report(cfg, DAY)  # two days later: coverage waits, the new drift is asked
    assert rep["retrain"] == {"GOOG": ["no_production", "input_drift"]}
    assert rep["tickers"]["GOOG"]["alerts"] == ["coverage_drift", "input_drift"]  # still shown
    monday = DAY + dt.timedelta(days=10)  # the cooldown (7 days) is over
    journal.record(
        cfg, schedule.DAILY, monday, event="end", task="monitor", ticker="GOOG", out=drifted
    )
    assert "coverage_drift" in daily.report(cfg, monday)["retrain"]["GOOG"]
