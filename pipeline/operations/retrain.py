"""Why a retrain runs, and how: from the daily DAG's events, a request, or the calendar.

The retrain DAG is scheduled by a weekly cron *or* the daily report's asset event
(AssetOrTimeSchedule). Several events can be queued for one run; all are read and their
reasons merged. A retrain on evidence refits with the last tuned parameters (the
production version's; tuned afresh when there are none); the weekly one tunes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import schedule
from pipeline.config import Config
from pipeline.orchestration import journal
from pipeline.schedule import RETRAIN

WEEKLY = "weekly"


def plan(
    cfg: Config,
    events: Mapping[Any, Any] | None,
    conf: Mapping[str, Any] | None,
    day: dt.date,
) -> dict[str, Any]:
    """{day, trigger, reasons {ticker: [reason]}, mode tune|refit} for this run."""
    from pipeline.data.suite import expected_session

    reasons: dict[str, list[str]] = {}
    days: list[dt.date] = []
    for batch in (events or {}).values():
        for event in batch:
            extra = dict(getattr(event, "extra", None) or {})
            merge(reasons, extra.get("reasons") or {})
            if extra.get("day"):
                days.append(dt.date.fromisoformat(str(extra["day"])))
    conf = conf or {}
    merge(reasons, conf.get("reasons") or {})
    if conf.get("day"):
        days.append(dt.date.fromisoformat(str(conf["day"])))
    run_for = max(days) if days else day
    trigger = "evidence" if reasons else WEEKLY
    mode = conf.get("mode") or ("tune" if trigger == WEEKLY else "refit")
    if mode not in ("tune", "refit"):
        raise ValueError(f"retrain mode must be tune or refit, not {mode!r}")
    session = expected_session(run_for, cfg.validation.calendar).date()
    return {"day": session.isoformat(), "trigger": trigger, "reasons": reasons, "mode": mode}


def merge(into: dict[str, list[str]], more: Mapping[str, Any]) -> None:
    for ticker, why in more.items():
        known = into.setdefault(str(ticker), [])
        known += [str(w) for w in why if str(w) not in known]


def summary(p: Mapping[str, Any]) -> str:
    """'weekly (tunes)' or 'evidence (refit): GOOG: inputs outside the training range'."""
    head = f"{p['trigger']} ({'tunes' if p['mode'] == 'tune' else 'refits'})"
    return f"{head}: {schedule.why(p['reasons'])}" if p["reasons"] else head


def plans_path(cfg: Config, day: dt.date) -> Path:
    return cfg.layout.root / "reports" / "retrain" / f"{day.isoformat()}.json"


def record_plan(cfg: Config, p: Mapping[str, Any]) -> None:
    """Keep the plan of every retrain (a day can have several): the cooldown reads them."""
    path = plans_path(cfg, dt.date.fromisoformat(p["day"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*done, dict(p)], indent=2))


def recent_reasons(cfg: Config, day: dt.date, days: int) -> dict[str, set[str]]:
    """Per ticker, the reasons retrains of the last `days` calendar days (up to `day`) ran for."""
    out: dict[str, set[str]] = {}
    for back in range(days + 1):
        path = plans_path(cfg, day - dt.timedelta(days=back))
        if path.exists():
            for p in json.loads(path.read_text()):
                for ticker, why in (p.get("reasons") or {}).items():
                    out.setdefault(ticker, set()).update(why)
    return out


def record_left_out(cfg: Config, day: str, going: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The configured tickers this retrain goes on without, each with its reason (from the
    retrain's journal: skipped, quarantined with no stored bars, failed), kept with the
    day's retrain plan and printed; the universe's model is trained on the rest."""
    when = dt.date.fromisoformat(day)
    outcomes = journal.ticker_outcomes(journal.read(cfg, RETRAIN, when))
    names = {c["ticker"] for c in going}
    left = {
        t: journal.reason(outcomes.get(t, {"ran": [], "failed": None}))
        or "its data steps did not finish"
        for t in cfg.tickers
        if t not in names
    }
    path = plans_path(cfg, when)
    plans = json.loads(path.read_text()) if path.exists() else [{"day": day}]
    plans[-1] = {**plans[-1], "members": len(names), "left_out": left}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plans, indent=2))
    for t, why in left.items():
        print(f"{t}: left out of this retrain: {why}")
    return left
