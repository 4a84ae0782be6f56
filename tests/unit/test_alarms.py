"""The universe's alarms: a stock's chance streak asks for nothing, a loss on most stocks
asks for a retrain and makes production beatable for the gate; one model per ticker keeps
every alarm it raises."""

from __future__ import annotations

import datetime as dt
import string
from typing import Any

from pipeline import schedule, tracking
from pipeline.data.universe import UNIVERSE
from pipeline.lifecycle import registry
from pipeline.operations import alarms, daily
from pipeline.orchestration import journal

DAY = dt.date(2013, 3, 1)
STOCKS = [f"S{a}{b}" for a in string.ascii_uppercase[:5] for b in string.ascii_uppercase[:8]]
CHANCE = 1 / 32  # all five of five days worse than naive, under no difference
CALM = {"days": 5, "worse_pvalue": 0.5, "losing": False, "coverage_days": 5}
CALM |= {"coverage_pvalue": 1.0, "coverage_drift": False}
LOST = CALM | {"worse_pvalue": CHANCE, "losing": True}


def monitored(lost: int, **more: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The 40 stocks' monitoring: the first `lost` lost all five days to naive."""
    out = {t: dict(LOST if i < lost else CALM) for i, t in enumerate(STOCKS)}
    for ticker, summary in more.items():
        out[ticker] |= summary
    return out


def test_a_stock_chance_alone_would_flag_stands_for_nothing(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=STOCKS, model__scope="universe")
    stand = alarms.standing(cfg, monitored(2))
    assert stand == {"beatable": set(), "coverage_drift": set()}
    assert alarms.counts(monitored(2), stand)["beatable"] == {
        "tested": 40,
        "raised": 2,
        "standing": 0,
    }


def test_a_loss_on_most_stocks_stands_on_each_of_them(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=STOCKS, model__scope="universe")
    # 30 of 40 at p = 1/32: Benjamini-Hochberg's adjusted p = 1/32 x 40/30 = 0.042 < 0.05
    assert alarms.standing(cfg, monitored(30))["beatable"] == set(STOCKS[:30])
    assert alarms.standing(cfg, monitored(24))["beatable"] == set()  # 1/32 x 40/24 = 0.052


def test_coverage_stands_by_how_far_it_fell_and_on_how_many_stocks(make_cfg) -> None:  # type: ignore[no-untyped-def]
    from scipy.stats import binomtest

    cfg = make_cfg(tickers=STOCKS, model__scope="universe")

    def covered(k: int) -> dict[str, Any]:  # k of five closes inside the 80 % interval
        return {"coverage_pvalue": binomtest(k, 5, 0.8).pvalue, "coverage_drift": True}

    # none of five (p = 0.0003): it stands alone among 40 (adjusted 0.013)
    assert alarms.standing(cfg, monitored(0, SAA=covered(0)))["coverage_drift"] == {"SAA"}
    # one of five (p = 0.0067): alone it does not (0.27); on eight stocks it does (0.034)
    assert alarms.standing(cfg, monitored(0, SAA=covered(1)))["coverage_drift"] == set()
    eight = monitored(0, **{t: covered(1) for t in STOCKS[:8]})
    assert alarms.standing(cfg, eight)["coverage_drift"] == set(STOCKS[:8])
    # too few days to test: not among the tests, and standing nowhere
    short = monitored(0, SAA=covered(0) | {"coverage_days": 3})
    assert alarms.counts(short, alarms.standing(cfg, short))["coverage_drift"]["standing"] == 0


def test_one_model_per_ticker_keeps_every_alarm(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=STOCKS, model__scope="ticker")
    assert alarms.standing(cfg, monitored(2)) is None
    assert daily.still_asks("beatable", "SAA", set(), None)


def test_the_report_asks_only_for_standing_alarms_and_flags_the_universe(make_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg(tickers=STOCKS, model__scope="universe")
    mc = tracking.client(cfg)
    name = registry.model_name(cfg, UNIVERSE)
    mc.create_registered_model(name)
    for ticker, summary in monitored(2).items():
        journal.record(
            cfg, schedule.DAILY, DAY, event="end", task="monitor", ticker=ticker,
            out={"monitoring": summary},
        )  # fmt: skip
    rep = daily.report(cfg, DAY)
    assert rep["tickers"]["SAA"]["alerts"] == ["beatable"]  # its own evidence, shown
    assert rep["retrain"]["SAA"] == ["no_production"]  # but it asks for no refit
    assert rep["alarms"]["beatable"] == {"tested": 40, "raised": 2, "standing": 0}
    assert not registry.is_production_beatable(cfg, UNIVERSE)

    later = DAY + dt.timedelta(days=3)
    for ticker, summary in monitored(30).items():
        journal.record(
            cfg, schedule.DAILY, later, event="end", task="monitor", ticker=ticker,
            out={"monitoring": summary},
        )  # fmt: skip
    rep = daily.report(cfg, later)
    assert rep["retrain"]["SAA"] == ["no_production", "beatable"]
    assert rep["alarms"]["beatable"]["standing"] == 30
    assert registry.is_production_beatable(cfg, UNIVERSE)  # the gate lets a better one in
    # a stock's own tag (the monitor's) does not make the universe beatable by itself
    calm = DAY + dt.timedelta(days=4)
    for ticker, summary in monitored(0).items():
        journal.record(
            cfg, schedule.DAILY, calm, event="end", task="monitor", ticker=ticker,
            out={"monitoring": summary},
        )  # fmt: skip
    mc.set_registered_model_tag(name, registry.beatable_tag(cfg, "SAA"), "true")
    daily.report(cfg, calm)
    assert not registry.is_production_beatable(cfg, UNIVERSE)
