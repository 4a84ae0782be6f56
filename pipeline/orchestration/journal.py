"""What each task of a DAG run did, as it happens: one JSON line per task start and end.

Written by the tasks themselves (pipeline/orchestration/dag_tasks.py), wherever they run (in-process
under `airflow dags test`, or on a Celery worker sharing the state), so a person can follow
a run (`make run` prints the lines as they come) and the day's report knows, per ticker,
which step ran, what it returned and what failed, without reading Airflow's XComs of
failed tasks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from pipeline.config import Config


def path(cfg: Config, dag_id: str, day: dt.date) -> Path:
    return cfg.layout.root / "runs" / day.isoformat() / f"{dag_id}.jsonl"


def record(cfg: Config, dag_id: str, day: dt.date, **event: Any) -> None:
    """Append one event (a single write of one short line: concurrent tasks do not mix)."""
    where = path(cfg, dag_id, day)
    where.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"t": time.time(), **event}, default=str) + "\n"
    fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(cfg: Config, dag_id: str, day: dt.date) -> list[dict[str, Any]]:
    where = path(cfg, dag_id, day)
    if not where.exists():
        return []
    return [json.loads(line) for line in where.read_text().splitlines() if line.strip()]


def start_over(cfg: Config, dag_id: str, day: dt.date) -> None:
    """A new run of the DAG for the day: the previous run's events go to a .previous file."""
    where = path(cfg, dag_id, day)
    if where.exists():
        where.replace(where.with_suffix(".previous.jsonl"))


def describe(event: dict[str, Any], since: float) -> str:
    """One event as a progress line: seconds into the run, task, ticker (or chunk, with how
    many tickers it started with and how many go on), outcome."""
    at = f"{event['t'] - since:7.1f}s"
    chunk = "chunk" in event
    if chunk:
        who = f"{event['task']:<10} chunk {event['chunk'] + 1}/{event['chunks']}"
    else:
        who = f"{event['task']:<10} {event.get('ticker', ''):<9}"
    if event["event"] == "skipped":
        return f"{at}  {event['status']:<6} {who}         {event.get('reason', '')}"
    if event["event"] == "start":
        return f"{at}  start  {who}" + (f" ({event.get('tickers', 0)} tickers)" if chunk else "")
    took = f"{event.get('seconds', 0):6.1f}s"
    if event["event"] == "end":
        return f"{at}  done   {who} {took}" + (
            f"  {event.get('tickers', 0)} tickers go on" if chunk else ""
        )
    if event["event"] == "retrying":  # the error already says "retrying in about N s"
        return f"{at}  RETRY  {who} {took}  {event.get('error', '')}"
    return f"{at}  FAILED {who} {took}  {event.get('error', '')}"


def ticker_outcomes(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ticker, from the tasks' journal lines: what each step returned for it, and what
    failed or skipped it. A chunk's lines (pipeline/orchestration/dag_tasks.py) name no
    ticker: its end line holds every ticker's output, its failures one line each."""
    out: dict[str, dict[str, Any]] = {}

    def entry(ticker: str) -> dict[str, Any]:
        return out.setdefault(ticker, {"ran": [], "failed": None, "skipped": None})

    for e in events:
        if "chunk" in e:  # a chunk's start, end or failure as a whole
            for ticker, kept in (e.get("outs") or {}).items() if e["event"] == "end" else ():
                t = entry(ticker)
                if (t["failed"] or {}).get("task") == e["task"]:
                    t["failed"] = None  # a retry ran again: its outcome counts
                t["ran"].append(e["task"])
                t.update(kept)
            continue
        t = entry(e.get("ticker", ""))
        if (t["failed"] or {}).get("task") == e["task"] and e["event"] in ("start", "end"):
            t["failed"] = None  # a retry (or a cleared task) ran again: its outcome counts
        if e["event"] == "end":
            t["ran"].append(e["task"])
            t.update(e.get("out", {}))
        elif e["event"] == "skipped":
            t["skipped"] = {"task": e["task"], "status": e["status"], "reason": e["reason"]}
            t.update(e.get("out", {}))  # what it found before it was held back
        elif e["event"] == "failed" and (e.get("final", True) or e.get("rule")):
            t["failed"] = {"task": e["task"], "error": e.get("error", ""), "rule": e.get("rule")}
    return out


# Statuses that are a ticker's normal state, not a failure of the day
SETTLED = ("forecast", "no model", "held_out", "too_short")


def status(outcome: dict[str, Any]) -> str:
    failed = outcome.get("failed")
    if failed and failed.get("rule") == "quarantined":
        return "quarantined"
    if failed:
        return f"failed at {failed['task']}"
    if skipped := outcome.get("skipped"):
        return str(skipped["status"])
    if "forecast" not in outcome["ran"]:
        return "incomplete"
    return "forecast" if outcome.get("forecast") else "no model"


def reason(outcome: dict[str, Any]) -> str | None:
    """Why a ticker did not get its forecast, in one line (None when it did)."""
    failed, skipped = outcome.get("failed"), outcome.get("skipped")
    if failed and skipped:  # the retrain: its pull quarantined, then nothing to go on with
        return f"{failed.get('error')}; then {skipped['reason']}"
    if failed:
        return str(failed.get("error") or "")
    if skipped:
        return str(skipped["reason"])
    if "forecast" not in outcome["ran"]:
        return "its chain did not finish (see the run's log)"
    return None
