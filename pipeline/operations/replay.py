"""`python -m pipeline replay --from D1 --to D2`: the schedule, day after day, on real data.

Every session in the span runs as `make run` runs one (operations/operate.py: the daily DAG,
and the retrain its report asks for, or before it when nothing can serve), each day seeing
only the bars up to it; after the last session of each week, the weekly retrain (tuning),
as the Saturday cron would. One line per day, then one JSON line: sessions, retrains and
why, forecasts written, realised coverage of those forecasts, the state's size, and what
the retention of unpromoted versions freed on the way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import schedule
from pipeline.config import Config
from pipeline.monitoring.forecast import read_forecasts
from pipeline.operations import daily, operate
from pipeline.orchestration import journal, stop
from pipeline.orchestration.airflow_run import ensure_airflow_db, in_process


def sessions(cfg: Config, start: dt.date, end: dt.date) -> list[dt.date]:
    import exchange_calendars as xcals

    cal = xcals.get_calendar(cfg.validation.calendar, start="1990-01-01")
    return [d.date() for d in cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def week_ends(cfg: Config, days: list[dt.date]) -> set[dt.date]:
    """The days in `days` that end their week on the calendar (the next session falls in
    another ISO week): the weekly retrain runs after them, as the Saturday cron would."""
    ahead = sessions(cfg, days[0], days[-1] + dt.timedelta(days=14))
    following = dict(itertools.pairwise(ahead))

    def week(d: dt.date) -> tuple[int, int]:
        return d.isocalendar()[0], d.isocalendar()[1]

    return {d for d in days if d not in following or week(following[d]) != week(d)}


def status_counts(statuses: dict[str, Any]) -> dict[str, int]:
    out: Counter[str] = Counter(str(r["status"]).split(" (")[0] for r in statuses.values())
    return dict(out.most_common())


def size_bytes(*roots: Path) -> int:
    return sum(f.stat().st_size for r in roots if r.exists() for f in r.rglob("*") if f.is_file())


def coverage(cfg: Config, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Forecasts made in the span, and how often their intervals held the realised close."""
    frames = [read_forecasts(cfg, t) for t in cfg.tickers]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        return {"forecasts": 0}
    made = table[(table["as_of"] >= start.isoformat()) & (table["as_of"] <= end.isoformat())]
    realised = made.dropna(subset=["actual_close"])
    out: dict[str, Any] = {"forecasts": len(made), "realised": len(realised)}
    for level in (80, 95):
        hits = realised[f"inside_{level}"].dropna()
        out[f"coverage_{level}"] = float(hits.mean()) if len(hits) else None
    return out


def replay(cfg: Config, start: dt.date, end: dt.date) -> dict[str, Any]:
    days = sessions(cfg, start, end)
    weekly = week_ends(cfg, days)
    roots = (cfg.layout.root, Path(cfg.tracking.artifact_root))
    began, size_before = time.monotonic(), size_bytes(*roots)
    retrains: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    settled: Counter[str] = Counter()  # ticker-days by status, over the span
    stopped_at = None
    tidied = {"versions_deleted": 0, "freed_bytes": 0}
    for day in days:
        t0 = time.monotonic()
        out = operate.one_day(cfg, day, progress=False, runner=in_process)
        if stop.asked(cfg):
            print(f"{day}  stopped ({stop.asked(cfg)})", flush=True)
            stopped_at = day.isoformat()
            break
        if day in weekly:  # the Saturday cron
            operate.retrain(cfg, day, out, "weekly", {"mode": "tune"}, False, in_process)
        retrains += out.retrains
        for e in journal.read(cfg, schedule.RETRAIN, day):
            if e["task"] == "tidy" and e["event"] == "end" and "tidied" in e.get("out", {}):
                tidied["versions_deleted"] += len(e["out"]["tidied"]["deleted"])
                tidied["freed_bytes"] += int(e["out"]["tidied"]["freed_bytes"])
        statuses = (out.report or {}).get("tickers", {})
        bad = {
            t: statuses[t]["status"] for t in daily.failed_tickers(out.report or {"tickers": {}})
        }
        failed.update({f"{day} {t}": s for t, s in bad.items()})
        counts = status_counts(statuses)
        settled.update(counts)
        note = "; ".join(
            f"retrain {r['when']} ({r['mode']})"
            + (f": {schedule.why(r['reasons'])}" if r["reasons"] else "")
            for r in out.retrains
        )
        others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "forecast")
        print(
            f"{day}  {counts.get('forecast', 0)}/{len(cfg.tickers)} forecast"
            f"{'  (' + others + ')' if others else ''}"
            f"{'  ' + ', '.join(f'{t} {s}' for t, s in bad.items()) if bad else ''}"
            f"{'  ' + note if note else ''}  {time.monotonic() - t0:.1f}s",
            flush=True,
        )
        if out.rc == 2 or out.rc >= 128 or any(not r["ok"] for r in out.retrains):
            stopped_at = day.isoformat()  # a DAG run failed (or a stop): not a day further
            break
    return {
        "from": days[0].isoformat(),
        "to": days[-1].isoformat(),
        "sessions": len(days),
        "retrains": retrains,
        "retrain_count": len(retrains),
        "stopped_at": stopped_at,
        "not_forecast": failed,  # ticker-days that failed (quarantined, an error)
        "ticker_days": dict(settled),  # by status: forecast, held_out, too_short, ...
        **coverage(cfg, days[0], days[-1]),
        "state_bytes_before": size_before,
        "state_bytes_after": size_bytes(*roots),
        # what the state would hold without the retention of unpromoted versions
        "state_bytes_without_retention": size_bytes(*roots) + tidied["freed_bytes"],
        "retention": tidied,
        "wall_s": round(time.monotonic() - began, 1),
    }


def main(cfg: Config, start: dt.date, end: dt.date) -> int:
    """Exit 0: every day went through; 1: some ticker-days did not (listed); 2: refused,
    or a DAG run failed and the replay stopped there."""
    import sys

    for day in (start, end):
        if problem := operate.day_problem(cfg, day):
            print(f"refused: {problem}", file=sys.stderr)
            return 2
    if not sessions(cfg, start, end):
        print(
            f"refused: no {cfg.validation.calendar} session from {start} to {end}", file=sys.stderr
        )
        return 2
    ensure_airflow_db()
    operate.say_closed(cfg)
    with stop.on_signals(cfg):  # Ctrl-C, SIGTERM: no task starts, no day follows
        summary = replay(cfg, start, end)
    print(json.dumps(summary, default=str))
    if code := stop.exit_code(cfg):
        return code
    if summary["stopped_at"]:
        return 2
    return 1 if summary["not_forecast"] else 0
