"""What the DAGs' tasks run: a step on its carry, journalled, with the right failure.

Kept out of the DAG files so that they stay wiring only. Airflow is imported inside the
functions: these run in a task (or, chunk_step, in a test without Airflow).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from pipeline.config import load_config
from pipeline.data.rules import Skipped, ValidationFailed
from pipeline.orchestration import chunks, failures, journal, steps, stop
from pipeline.orchestration.failures import reason

Carry = dict[str, Any]  # pipeline.carry.Carry, as XCom hands it over

# What a step's journal line keeps of what it returned (the day's report reads them).
REPORTED = ("forecast", "monitoring", "quarantine_dir", "version", "promotion", "tidied",
            "quarantined_rows", "quarantined", "missing_sessions")  # fmt: skip


def advance(dag_id: str, name: str, c: Carry, keep_stored: bool = False) -> Carry:
    """Run step `name` on carry `c` inside an Airflow task. Bad data fails at once (no
    retry can heal it), or with `keep_stored` (the retrain) the ticker goes on with the
    bars already stored, its quarantined pull left out; other errors are left to the
    task's retry policy."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    cfg = failures.config_or_fail(load_config)
    ti = get_current_context()["ti"]
    final = ti.try_number > ti.max_tries  # no retry left: a failure closes the MLflow run
    day, who = steps.run_day(c), {"task": name, "ticker": c.get("ticker", "")}  # type: ignore[arg-type]
    journal.record(cfg, dag_id, day, event="start", **who)
    began = time.monotonic()

    def failed(error: str, **extra: Any) -> None:
        journal.record(cfg, dag_id, day, event="failed", seconds=time.monotonic() - began,
                       error=error, **extra, **who)  # fmt: skip

    try:
        with stop.interrupted(cfg):
            out = dict(steps.advance(cfg, name, c, final))  # type: ignore[arg-type]
    except ValidationFailed as exc:  # bad data: retrying cannot help
        failed(failed_rules(exc), rule="quarantined")
        if keep_stored:
            print(f"{c.get('ticker')}: the day's pull is quarantined; going on with stored bars")
            return {**c, "validation": {"passed": False, "quarantined": True, "rows": 0}}
        close_parent(cfg, name, c)
        raise AirflowFailException(str(exc)) from exc
    except Exception as exc:
        retry, line = failures.decide(exc, ti)
        print(line, flush=True)
        failed(line, final=not retry)
        if retry:
            raise  # the task's retries: a network blip, a restarting server
        close_parent(cfg, name, c)
        raise AirflowFailException(line) from exc
    kept = {k: out[k] for k in REPORTED if k in out and k not in c}
    journal.record(cfg, dag_id, day, event="end", seconds=time.monotonic() - began, out=kept, **who)
    return out


def advance_chunk(dag_id: str, name: str, chunk: Carry, keep_stored: bool = False) -> Carry:
    """Run step `name` for a chunk of tickers (pipeline/orchestration/chunks.py) inside an
    Airflow task. Each ticker ends on its own, journalled: bad data quarantines its day
    (or, with `keep_stored`, the retrain goes on with its stored bars), a ticker that is
    held out or too short is skipped with its reason, any other error fails that ticker
    alone; the chunk goes on with the rest. Only an error of the chunk as a whole (a
    store that cannot be reached) fails the task, for its retries."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    ti = get_current_context()["ti"]
    cfg = failures.config_or_fail(load_config)
    with stop.interrupted(cfg):
        try:
            return chunk_step(cfg, dag_id, name, chunk, keep_stored, ti)
        except Exception as exc:  # the chunk as a whole (journalled by chunk_step)
            retry, line = failures.decide(exc, ti)
            if retry:
                raise
            raise AirflowFailException(line) from exc


def chunk_step(
    cfg: Any, dag_id: str, name: str, chunk: Carry, keep_stored: bool, ti: Any = None
) -> Carry:
    """advance_chunk's work, outside Airflow: `ti` (the task instance) says whether a
    failure of the chunk as a whole is retried (failures.decide); without it, none is."""

    day = chunks.day_of(chunk)
    who = {"task": name, "chunk": chunk["chunk"], "chunks": chunk["chunks"]}
    journal.record(cfg, dag_id, day, event="start", tickers=len(chunk["members"]), **who)
    began = time.monotonic()
    try:
        outcomes = chunks.run(cfg, name, chunk)
    except Exception as exc:
        retry, line = failures.decide(exc, ti) if ti is not None else (False, reason(exc))
        print(line, flush=True)
        journal.record(cfg, dag_id, day, event="retrying" if retry else "failed",
                       seconds=time.monotonic() - began, error=line, final=not retry,
                       **who)  # fmt: skip
        raise
    going: dict[str, Carry] = {}
    outs: dict[str, dict[str, Any]] = {}
    for ticker, c in chunk["members"].items():
        got = outcomes.get(ticker, RuntimeError("the step returned nothing for it"))
        if isinstance(got, Exception):
            if kept := settle(cfg, dag_id, day, name, ticker, got, keep_stored):
                going[ticker] = {**c, **kept}
            continue
        going[ticker] = chunks.slim({**c, **got})
        outs[ticker] = {k: got[k] for k in REPORTED if k in got and k not in c}
    journal.record(cfg, dag_id, day, event="end", seconds=time.monotonic() - began,
                   tickers=len(going), outs=outs, **who)  # fmt: skip
    return {**chunk, "members": going}


def settle(
    cfg: Any, dag_id: str, day: Any, name: str, ticker: str, exc: Exception, keep_stored: bool
) -> Carry | None:
    """Journal one ticker's exception; the keys it goes on with, or None (it stops here)."""

    who = {"task": name, "ticker": ticker}
    if isinstance(exc, Skipped):
        kept = {k: exc.summary[k] for k in REPORTED if k in exc.summary}
        journal.record(cfg, dag_id, day, event="skipped", status=exc.status,
                       reason=exc.reason, out=kept, **who)  # fmt: skip
        return None
    if isinstance(exc, ValidationFailed):
        journal.record(cfg, dag_id, day, event="failed", error=failed_rules(exc),
                       rule="quarantined", **who)  # fmt: skip
        if keep_stored:
            print(f"{ticker}: the day's pull is quarantined; going on with stored bars")
            return {"validation": {"passed": False, "quarantined": True, "rows": 0}}
        return None

    journal.record(cfg, dag_id, day, event="failed", error=reason(exc), final=True, **who)
    return None


def close_parent(cfg: Any, name: str, c: Carry) -> None:
    """A failure no retry follows: the run's open MLflow parent run ends FAILED now."""

    with contextlib.suppress(Exception):  # the step's own error is the one to report
        steps.abandon(cfg, name, c)  # type: ignore[arg-type]


def failed_rules(exc: BaseException) -> str:
    """'validation: high_is_highest, ohlc_positive' from a ValidationFailed's FAIL lines."""
    lines = str(exc).splitlines()
    rules = [ln[5:].split(":")[0].strip() for ln in lines if ln.startswith("FAIL ")]
    return f"validation: {', '.join(dict.fromkeys(rules)) or reason(exc)}"
