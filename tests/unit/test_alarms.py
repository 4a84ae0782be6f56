"""The universe model judged as one: a few stocks' chance streaks ask for nothing, a loss on
the cross-section asks for a refit and makes production beatable for the gate, coverage
off on every session drifts; no evidence and old reports leave the tag alone; one model
per ticker keeps every alarm it raises."""

from __future__ import annotations

import datetime as dt
import sqlite3
import string
from contextlib import closing
from typing import Any

import numpy as np
import pytest

from pipeline import schedule, tracking
from pipeline.data.universe import UNIVERSE
from pipeline.lifecycle import registry
from pipeline.monitoring import pooled
from pipeline.monitoring.forecast import connect
from pipeline.operations import alarms, daily
from pipeline.orchestration import journal
from tests.helpers import register_versions

STOCKS = [f"S{a}{b}" for a in string.ascii_uppercase[:5] for b in string.ascii_uppercase[:8]]
SESSIONS = ["2013-02-21", "2013-02-22", "2013-02-25", "2013-02-26", "2013-02-27", "2013-02-28"]
DAY = dt.date(2013, 3, 1)
NAME = "price_lstm_universe"


def forecasts(
    cfg: Any,
    excess: dict[str, float],
    inside: float = 0.8,
    seed: int | None = None,
    sessions: list[str] = SESSIONS,
) -> None:
    """Realised forecasts of production v1 for the 40 stocks on `sessions`: naive's error
    1 % of a 100 close, the model's `excess[stock]` % more (0.1 % better where not named); a
    share `inside` of each session's closes inside the 80 % band (at random with `seed`)."""
    rng = np.random.default_rng(seed)
    with closing(connect(cfg)) as conn, conn:
        for day in sessions:
            for i, stock in enumerate(STOCKS):
                hit = rng.random() < inside if seed is not None else i < inside * len(STOCKS)
                conn.execute(
                    "INSERT OR REPLACE INTO forecasts (ticker, as_of, for_date, model_name,"
                    " model_version, forecast_close, naive_close, created_at, actual_close,"
                    " model_abs_error, naive_abs_error, inside_80) VALUES"
                    " (?, ?, ?, ?, '1', 100, 100, 'x', 101, ?, 1.0, ?)",
                    (stock, day, day, NAME, 1.0 + excess.get(stock, -0.1), int(hit)),
                )  # fmt: skip


@pytest.fixture
def cfg(make_cfg):  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=STOCKS, model__scope="universe")
    register_versions(cfg, UNIVERSE, 1)
    tracking.client(cfg).set_registered_model_alias(NAME, registry.PRODUCTION, "1")
    return cfg


def test_a_few_stocks_losing_every_day_is_no_loss_of_the_model(cfg) -> None:  # type: ignore[no-untyped-def]
    forecasts(cfg, {"SAA": 0.5, "SAB": 0.5})  # what chance alone gives a dozen of 388 stocks
    judged = alarms.judged(cfg, DAY, {})
    assert judged is not None and judged["sessions"] == 5 and judged["stocks"] == 40
    assert judged["losing"] is False and alarms.reasons(judged) == []


def test_a_loss_on_the_cross_section_every_session_is(cfg) -> None:  # type: ignore[no-untyped-def]
    forecasts(cfg, {s: 0.05 for s in STOCKS})  # every stock a little worse, every session
    judged = alarms.judged(cfg, DAY, {})
    assert judged["losing"] is True and judged["worse_pvalue"] == pytest.approx(1 / 32)
    assert alarms.reasons(judged) == ["beatable"]


def test_coverage_drifts_when_every_session_misses_it(cfg) -> None:  # type: ignore[no-untyped-def]
    forecasts(cfg, {}, inside=0.5)
    assert alarms.judged(cfg, DAY, {})["coverage_drift"] is True
    forecasts(cfg, {}, inside=0.8, seed=1)
    judged = alarms.judged(cfg, DAY, {})
    assert judged["coverage_drift"] is False and abs(judged["coverage_80"] - 0.8) < 0.1


def test_the_tests_on_sessions() -> None:
    import pandas as pd

    per = pd.DataFrame(
        {"for_date": SESSIONS[1:], "stocks": 388, "excess": [0.1] * 4 + [-0.1], "coverage_80": 0.8}
    )
    assert pooled.judge(per, 5, 0.05)["losing"] is False  # four of five: p = 0.19
    assert pooled.judge(per.head(4), 5, 0.05)["losing"] is False  # too few sessions
    low = per.assign(coverage_80=[0.6, 0.62, 0.58, 0.61, 0.6])
    assert pooled.judge(low, 5, 0.05)["coverage_drift"] is True
    near = per.assign(coverage_80=[0.79, 0.77, 0.82, 0.8, 0.78])  # inside the tolerance
    assert pooled.judge(near, 5, 0.05)["coverage_drift"] is False
    # two stocks a session, both covered every time: lumpy, not evidence (the binomial's
    # variance, not a spread of zero, weighs it: p = 0.19)
    few = per.assign(stocks=2, coverage_80=1.0)
    assert pooled.judge(few, 5, 0.05)["coverage_drift"] is False
    wide = per.assign(coverage_80=[0.6, 0.95, 0.62, 0.9, 0.6])  # off, but too unsteady to say
    judged = pooled.judge(wide, 5, 0.05)
    assert abs(judged["coverage_80"] - 0.8) > 0.05 and judged["coverage_drift"] is False


def test_one_model_per_ticker_keeps_every_alarm(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=STOCKS, model__scope="ticker")
    assert alarms.judged(cfg, DAY, {}) is None
    assert daily.still_asks("beatable", set(), universe=False)
    assert not daily.still_asks("beatable", set(), universe=True)  # a universe stock's
    assert not daily.still_asks("input_drift", set(), universe=True)  # judged across stocks
    assert daily.still_asks("no_production", set(), universe=True)


def test_only_recent_sessions_of_the_version_count(cfg) -> None:  # type: ignore[no-untyped-def]
    forecasts(cfg, {s: 0.05 for s in STOCKS})
    assert len(pooled.sessions(cfg, DAY, NAME, "1")) == 6
    # a version rolled back to weeks later is not judged on these old sessions
    assert pooled.sessions(cfg, dt.date(2013, 4, 1), NAME, "1").empty
    assert pooled.sessions(cfg, DAY, NAME, "2").empty  # nor another version on them


def _monitor(cfg: Any, day: dt.date, lost: set[str]) -> None:
    for stock in STOCKS:
        summary = {"days": 5, "losing": stock in lost, "worse_pvalue": 1 / 32}
        journal.record(
            cfg, schedule.DAILY, day, event="end", task="monitor", ticker=stock,
            out={"monitoring": summary},
        )  # fmt: skip


def test_the_report_asks_for_the_universe_and_flags_it_only_on_evidence(cfg) -> None:  # type: ignore[no-untyped-def]
    forecasts(cfg, {"SAA": 0.5, "SAB": 0.5})
    _monitor(cfg, DAY, {"SAA", "SAB"})
    rep = daily.report(cfg, DAY)
    assert rep["tickers"]["SAA"]["alerts"] == ["beatable"]  # its own evidence, shown
    assert "SAA" not in rep["retrain"] and UNIVERSE not in rep["retrain"]  # asks nothing
    assert rep["universe"]["losing"] is False and rep["universe"]["stocks"] == 40
    assert not registry.is_production_beatable(cfg, UNIVERSE)

    forecasts(cfg, {s: 0.05 for s in STOCKS}, sessions=SESSIONS[1:])  # the first stays calm
    rep = daily.report(cfg, DAY)
    assert rep["retrain"] == {UNIVERSE: ["beatable"]}
    assert "production lost to naive" in schedule.why(rep["retrain"])
    assert registry.is_production_beatable(cfg, UNIVERSE)  # the gate lets a better one in

    # an older day's report, rewritten (its window: the calm session and four worse, not
    # losing), leaves today's judgement alone
    assert daily.report(cfg, dt.date(2013, 2, 27))["universe"]["losing"] is False
    assert registry.is_production_beatable(cfg, UNIVERSE)
    # a judgement of a version no longer in production is not written
    alarms.flag_universe(cfg, {**rep["universe"], "version": "7", "losing": False})
    assert registry.is_production_beatable(cfg, UNIVERSE)
    # no realised session of production's forecasts: no evidence, the tag stays
    with closing(sqlite3.connect(cfg.layout.forecasts_db())) as conn, conn:
        conn.execute("DELETE FROM forecasts")
    later = dt.date(2013, 3, 4)
    _monitor(cfg, later, set())
    assert daily.report(cfg, later)["universe"]["sessions"] == 0
    assert registry.is_production_beatable(cfg, UNIVERSE)
    # a calm cross-section clears it
    forecasts(cfg, {})
    assert daily.report(cfg, later)["universe"]["losing"] is False
    assert not registry.is_production_beatable(cfg, UNIVERSE)


def test_the_days_table_says_how_the_universe_was_judged(cfg) -> None:  # type: ignore[no-untyped-def]
    from pipeline.operations import day_table

    forecasts(cfg, {s: 0.05 for s in STOCKS})
    _monitor(cfg, DAY, set())
    rep = daily.report(cfg, DAY)
    line = day_table.universe_line(rep)
    assert line is not None and "universe model v1 over its last 5 sessions (40+ stocks)" in line
    assert "worse on 5 (p = 0.031)" in line and "80 % coverage 80.0 %" in line
    assert line in day_table.table(rep) and line in day_table.summary(rep)


def test_the_universes_inputs_drift_on_a_share_of_its_stocks(cfg) -> None:  # type: ignore[no-untyped-def]
    checked = {"drift_checked": True, "input_drift": False}
    monitored = {s: dict(checked, input_drift=i < 4) for i, s in enumerate(STOCKS)}
    monitored["SEH"] = {"drift_checked": False}  # too few sessions to check: not counted
    one_tenth = alarms.drifted(cfg, monitored)
    assert one_tenth == {"drift_checked": 39, "drifted_share": 0.1026, "input_drift": False}
    many = {s: dict(checked, input_drift=i < 10) for i, s in enumerate(STOCKS)}
    assert alarms.drifted(cfg, many)["input_drift"] is True  # 25 % of the stocks
    assert alarms.reasons({"input_drift": True}) == ["input_drift"]
    assert alarms.drifted(cfg, {})["input_drift"] is False  # none checked: no evidence


def test_a_busy_registry_does_not_cost_the_days_report(cfg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipeline.lifecycle.registry import PromotionRefused

    def busy(*_: Any) -> None:
        raise PromotionRefused("the registry is busy: another promotion holds its lock")

    forecasts(cfg, {s: 0.05 for s in STOCKS})
    _monitor(cfg, DAY, set())
    monkeypatch.setattr(alarms, "flag_universe", busy)
    rep = daily.report(cfg, DAY)
    assert rep["retrain"] == {UNIVERSE: ["beatable"]}  # still asked for
    assert daily.report_path(cfg, DAY).is_file()  # and written
    assert not registry.is_production_beatable(cfg, UNIVERSE)  # the tag as it was
