"""The day's report: per ticker what happened, and whether the model must be retrained.

Built from the daily DAG's journal (pipeline/orchestration/journal.py) after every
ticker's chain has ended, however it ended. Retraining is asked for, with the tickers
and reasons, when a configured ticker has no production model that can serve it, when
monitoring says production lost to naive significantly (a sign test over the monitoring
window) or its interval coverage drifted, or when the model's inputs drifted
(pipeline/monitoring/drift.py); evidence a retrain of the last
`monitoring.retrain_cooldown_days` already answered is not asked again. For the universe's
one model, the stocks' own loss, coverage and input-drift alarms are shown but ask for
nothing: the model is judged once on its stocks' sessions and drift shares
(pipeline/operations/alarms.py), and that asks under the key `universe`.
Written to state/reports/daily/<day>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.data.universe import UNIVERSE
from pipeline.lifecycle import registry
from pipeline.operations import alarms
from pipeline.orchestration import journal
from pipeline.orchestration.journal import SETTLED, reason, status, ticker_outcomes
from pipeline.schedule import DAILY

log = logging.getLogger(__name__)


def retrain_reasons(
    cfg: Config, ticker: str, outcome: dict[str, Any], served: dict[str, bool] | None = None
) -> list[str]:
    """Why `ticker` asks for a retrain; `served` caches per registered model whether a
    production version serves it (the universe's one model: one lookup for all)."""
    served = {} if served is None else served
    name = registry.model_name(cfg, ticker)
    if name not in served:
        served[name] = registry.production_version(cfg, ticker) is not None
    reasons = []
    if not served[name]:
        reasons.append("no_production")
    monitoring = outcome.get("monitoring") or {}
    if monitoring.get("losing"):  # lost to naive significantly, not a 5-day coin flip
        reasons.append("beatable")
    if monitoring.get("coverage_drift"):
        reasons.append("coverage_drift")
    if monitoring.get("input_drift"):
        reasons.append("input_drift")
    return reasons


def report(cfg: Config, day: dt.date) -> dict[str, Any]:
    """The day's report (also written to state/reports/daily/<day>.json)."""
    from pipeline.orchestration.dates import is_session

    if not is_session(day, cfg.validation.calendar):  # the DAG skipped every ticker
        return write(cfg, {"day": day.isoformat(), "session": False, "tickers": {}, "retrain": {}})
    from pipeline.operations.retrain import recent_reasons

    outcomes = ticker_outcomes(journal.read(cfg, DAILY, day))
    cooling = recent_reasons(cfg, day, cfg.monitoring.retrain_cooldown_days)
    monitored = {t: outcomes.get(t, {}).get("monitoring") or {} for t in cfg.tickers}
    universe = alarms.judged(cfg, day, monitored)  # None: each ticker its own model
    tickers: dict[str, Any] = {}
    retrain: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    served: dict[str, bool] = {}
    labels: dict[tuple[str, str], str] = {}
    for ticker in cfg.tickers:
        outcome = outcomes.get(ticker, {"ran": [], "failed": None})
        row = outcome.get("forecast") or {}
        monitoring = outcome.get("monitoring") or {}
        state, asked = status(outcome), retrain_reasons(cfg, ticker, outcome, served)
        tickers[ticker] = {
            "status": state,
            "error": reason(outcome)
            or (unserved(cfg, ticker, seen) if state == "no model" else None),
            "last_close": row.get("naive_close"),  # naive: tomorrow = today's close
            "for_date": row.get("for_date"),
            "forecast": row.get("forecast_close"),
            "lower_80": row.get("lower_80"),
            "upper_80": row.get("upper_80"),
            "lower_95": row.get("lower_95"),
            "upper_95": row.get("upper_95"),
            "model_version": row.get("model_version"),
            "forecaster": forecaster(cfg, row, labels),
            "alerts": [r for r in asked if r != "no_production"],
            "drift_outside_max": monitoring.get("drift_outside_max"),
            "recent_ratio": recent_ratio(monitoring),
            "quarantined_rows": outcome.get("quarantined_rows") or 0,
            "quarantined": outcome.get("quarantined") or [],
            "missing_sessions": (outcome.get("missing_sessions") or {}).get("count", 0),
        }
        # evidence a recent retrain already answered waits out the cooldown (a refit the
        # gate refused leaves production, and its alarm, as they were: no refit every day)
        reasons = [
            r
            for r in asked
            if still_asks(r, cooling.get(ticker, set()), cfg.model.scope == UNIVERSE)
        ]
        if reasons:
            retrain[ticker] = reasons
    rep = {"day": day.isoformat(), "tickers": tickers, "retrain": retrain}
    if universe is not None:
        rep["universe"] = universe
        if asked := [r for r in alarms.reasons(universe) if r not in cooling.get(UNIVERSE, set())]:
            retrain[UNIVERSE] = asked
    write(cfg, rep)  # first: a registry hiccup below must not cost the day's report
    if universe is not None:
        flag_universe(cfg, universe)
    return rep


def flag_universe(cfg: Config, universe: dict[str, Any]) -> None:
    """The universe model's tag from its judgement (alarms.flag_universe); a registry that
    is busy or down leaves it as it was, said in the log, and the day goes on."""
    from mlflow.exceptions import MlflowException

    from pipeline.lifecycle.registry import PromotionRefused

    try:
        alarms.flag_universe(cfg, universe)
    except (MlflowException, PromotionRefused) as exc:
        log.warning("the universe model's beatable tag was not updated: %s", exc)


def still_asks(reason: str, cooling: set[str], universe: bool) -> bool:
    """Whether a reason a ticker raised asks for a retrain today: not while a recent retrain
    cools it down, and for the universe's one model (`universe`) not a stock's loss,
    coverage or input-drift alarm, which the universe judges once (alarms.py)."""
    if reason == "no_production":
        return True
    if reason in cooling:
        return False
    return not universe or reason not in alarms.TESTED


def unserved(cfg: Config, ticker: str, seen: dict[str, str]) -> str:
    """Why no model forecasts `ticker`: what the gate said of the newest candidate (looked
    up once per registered model: `seen`)."""
    name = registry.model_name(cfg, ticker)
    if name not in seen:
        found = registry.version_by_alias(cfg, name, registry.CANDIDATE)
        said = (found.tags.get("gate_reason") or "not promoted") if found else ""
        seen[name] = (
            f"no production model: v{found.version} was not promoted ({said})"
            if found
            else "no model has been trained for it yet"
        )
    return seen[name]


def forecaster(cfg: Config, row: dict[str, Any], seen: dict[tuple[str, str], str]) -> str | None:
    """What the version that forecast a row forecasts with (its `forecaster` tag: LSTM,
    HAR), and `fallback` where it serves without having passed the gate; looked up once per
    version (`seen`). None for no forecast."""
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    name, version = row.get("model_name"), row.get("model_version")
    if not name or not version:
        return None
    key = (str(name), str(version))
    if key not in seen:
        try:
            tags = tracking.client(cfg).get_model_version(*key).tags
        except MlflowException:  # deleted since: the row still says which version
            tags = {}
        kind = tags.get(registry.FORECASTER_TAG, "lstm").upper()
        seen[key] = f"{kind} fallback" if tags.get(registry.FALLBACK_TAG) else kind
    return seen[key]


def recent_ratio(monitoring: dict[str, Any]) -> float | None:
    """The production model's MAE over naive's on its recent realised days (below 1: it
    beats naive), or None before any."""
    model, naive = monitoring.get("model_mae"), monitoring.get("naive_mae")
    if not monitoring.get("days") or not naive or model is None:
        return None
    return round(float(model) / float(naive), 4)


def write(cfg: Config, rep: dict[str, Any]) -> dict[str, Any]:
    where = report_path(cfg, dt.date.fromisoformat(rep["day"]))
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(json.dumps(rep, indent=2, default=str))
    return rep


def report_path(cfg: Config, day: dt.date) -> Path:
    return cfg.layout.root / "reports" / "daily" / f"{day.isoformat()}.json"


def failed_tickers(rep: dict[str, Any]) -> list[str]:
    """Every ticker whose day did not go through: quarantined, failed, or never finished
    (its chain did not run, or a task died without a word). Held out and too short are
    statuses a ticker stays in until its data change, not failures of the day."""
    return [t for t, r in rep["tickers"].items() if r["status"] not in SETTLED]


def housekeeping(cfg: Config, day: dt.date) -> None:
    """After the day's report: the index of the chunks' Data Docs, and old raw pulls and
    feature files compacted (pipeline/data/compaction.py)."""
    from pipeline.data import compaction, suite

    if page := suite.docs_index(cfg.layout.data_docs()):
        print(f"GX Data Docs: {page}")
    print(f"compaction: {compaction.compact(cfg, day)}")
