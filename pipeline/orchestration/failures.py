"""Which failures a retry can heal, decided once for every task of the DAGs.

Only transient errors go to a task's retries: a network source or tracking server that
did not answer (connection refused or reset, a timeout), a store that is busy (SQLite's
"database is locked", PostgreSQL going away). Everything else fails the task at once,
with its reason in the journal and so on `make run`'s console: bad data, a bad or
changed config, a file that is missing or empty, permissions, a full disk, and any error
nobody has shown to be passing (a retry of a bug fails the same way, minutes later).
A retry is said as it is decided: "retrying in about N s: reason".
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

# errors of the system that pass: the other end was busy, restarting, or briefly away
TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EAGAIN,
    errno.EBUSY,
}
TRANSIENT_TEXT = ("database is locked", "database is busy", "server closed the connection",
                  "connection refused", "connection reset", "timed out", "temporarily unavailable",
                  "max retries exceeded", "could not connect")  # fmt: skip
F = TypeVar("F", bound=Callable[..., Any])


def transient(exc: BaseException) -> bool:
    """Whether a retry can heal `exc` (see the module docstring)."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in TRANSIENT_ERRNOS
    kind = type(exc).__module__.split(".")[0]
    text = str(exc).lower()
    if kind in ("requests", "urllib3", "sqlalchemy", "sqlite3", "psycopg2", "mlflow"):
        return any(t in text for t in TRANSIENT_TEXT)
    return False


def reason(exc: BaseException) -> str:
    """One line that says what is wrong and where."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def retry_delay_s(ti: Any) -> float:
    """About how long Airflow waits before the next try of `ti` (its retry_delay, doubled
    per try with exponential backoff, capped by max_retry_delay)."""
    task = ti.task
    base = task.retry_delay
    delay = base.total_seconds() if isinstance(base, dt.timedelta) else float(base or 0)
    if getattr(task, "retry_exponential_backoff", False):
        delay *= 2 ** max(0, ti.try_number - 1)
    cap = getattr(task, "max_retry_delay", None)
    if isinstance(cap, dt.timedelta):
        delay = min(delay, cap.total_seconds())
    return delay


def decide(exc: BaseException, ti: Any) -> tuple[bool, str]:
    """(retry?, the line to say): a retry only for a transient error with tries left."""
    line = reason(exc)
    if transient(exc) and ti.try_number <= ti.max_tries:
        return True, f"retrying in about {retry_delay_s(ti):.0f} s: {line}"
    why = "" if transient(exc) else " (not retried: no retry can fix this)"
    return False, f"{line}{why}"


def classified(dag_id: str) -> Callable[[F], F]:
    """A DAG task's function with its failures classified: a permanent one fails the task
    at once (AirflowFailException), a transient one goes to its retries, each journalled
    with its reason where the state can be written. Airflow's own exceptions (fail, skip)
    pass as they are."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            from airflow.sdk.exceptions import AirflowException

            try:
                return fn(*args, **kwargs)
            except AirflowException:
                raise
            except Exception as exc:
                raise settle(dag_id, exc) from exc

        return run  # type: ignore[return-value]

    return wrap


def settle(dag_id: str, exc: Exception) -> Exception:
    """Journal `exc` of the current task, and what to raise for it."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    ctx = get_current_context()
    ti = ctx["ti"]
    retry, line = decide(exc, ti)
    print(line, flush=True)
    _journal(dag_id, ctx, ti.task_id, line, retry)
    return exc if retry else AirflowFailException(line)


def _journal(dag_id: str, ctx: Any, task: str, line: str, retry: bool) -> None:
    """The failure in the run's journal (so on the console), if the state allows it."""
    import contextlib

    from pipeline.config import load_config
    from pipeline.orchestration import journal
    from pipeline.orchestration.dates import run_day

    with contextlib.suppress(Exception):  # a config or state that cannot be used: the log has it
        event = "retrying" if retry else "failed"
        journal.record(load_config(), dag_id, run_day(ctx), event=event, task=task, error=line,
                       final=not retry)  # fmt: skip


def config_or_fail(load: Any) -> Any:
    """The config, or the task fails at once: a config made invalid while a run is under
    way is not healed by waiting."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return load()
    except Exception as exc:
        line = f"config: {reason(exc)} (not retried: no retry can fix this)"
        print(line, flush=True)
        raise AirflowFailException(line) from exc
