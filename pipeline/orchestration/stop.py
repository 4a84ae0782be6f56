"""A stop asked of a run: once asked, no task starts and an interrupted task is not retried.

Ctrl-C or SIGTERM to `make run` or `make replay` writes the stop marker
(state/runs/STOP: the signal and when) before anything else, then stops what runs. Every
task of the DAGs checks it before it acts (`check`, the DAGs' `pre_execute`) and fails at
once, without a retry, when it is there: in the grace Airflow gives a stopped run, nothing
new starts (no `promote` after a stop during `register`); a task the stop interrupted
fails for good (`interrupted`) instead of going to its retries. A run clears the marker
when it starts, under the run lock, so a stop is never carried into the next run.
"""

from __future__ import annotations

import _thread
import contextlib
import datetime as dt
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config
from pipeline.orchestration.failures import config_or_fail


class Stopped(Exception):
    """A stop was asked for: the message says which signal and when."""


def marker(cfg: Config) -> Path:
    return cfg.layout.root / "runs" / "STOP"


def ask(cfg: Config, signum: int) -> None:
    """Note a stop for every task of this state's runs to see."""
    where = marker(cfg)
    where.parent.mkdir(parents=True, exist_ok=True)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    where.write_text(json.dumps({"signal": signal.Signals(signum).name, "at": at}))


def asked(cfg: Config) -> str | None:
    """Why the run is stopping ("SIGTERM at ..."), or None."""
    try:
        said = json.loads(marker(cfg).read_text())
    except (OSError, ValueError):
        return None
    return f"{said.get('signal', 'a signal')} at {said.get('at', '?')}"


def exit_code(cfg: Config) -> int | None:
    """128 + the signal, the shell's code for a stop by it, once a stop is asked."""
    try:
        name = json.loads(marker(cfg).read_text()).get("signal", "SIGINT")
    except (OSError, ValueError):
        return None
    return 128 + int(getattr(signal.Signals, name, signal.SIGINT))


def clear(cfg: Config) -> None:
    marker(cfg).unlink(missing_ok=True)


# on_signals' handler while it is active: Airflow's task runner puts its own on SIGTERM
# at every task's start (and never puts the previous one back), which in a run in this
# process (the replay's dag.test) would swallow the signal; check() puts it back
_HANDLER: list[Any] = []


def check(context: Any = None) -> None:
    """The DAGs' pre_execute: a task does not start once a stop is asked (no retry)."""
    from airflow.sdk.exceptions import AirflowFailException

    if _HANDLER and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _HANDLER[-1])
    if why := asked(config_or_fail(load_config)):  # a config broken mid-run: fails at once
        raise AirflowFailException(f"not started: the run was stopped ({why})")


@contextlib.contextmanager
def interrupted(cfg: Config) -> Iterator[None]:
    """Inside a task: an interruption with a stop asked fails it for good (no retry)."""
    try:
        yield
    except BaseException as exc:
        if why := asked(cfg):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"stopped ({why})") from exc
        raise


@contextlib.contextmanager
def on_signals(cfg: Config) -> Iterator[list[int]]:
    """While in the block (main thread only), the first SIGINT or SIGTERM asks the stop
    and interrupts what runs (KeyboardInterrupt); later ones are ignored while it unwinds.
    The list gets the signal."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def stop(signum: int, _frame: object) -> None:
        if got:
            return
        got.append(signum)
        ask(cfg, signum)
        nudge_until_calm()
        raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, _nudge)
    _HANDLER.append(stop)
    try:
        yield got
    finally:
        calm()
        _HANDLER.remove(stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


NUDGE_S = 0.2
_NUDGING: list[threading.Event] = []


def _nudge(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def nudge_until_calm() -> None:
    """Interrupt the main thread again every NUDGE_S until calm(): a task catches the
    first interruption, and Airflow's dag.test would otherwise poll on, a second at a
    time, until every later task had failed on the marker. (A thread and SIGUSR1's
    handler, simulated by interrupt_main: Airflow owns SIGALRM for its import timeouts.)"""
    done = threading.Event()
    _NUDGING.append(done)

    def nudge() -> None:
        while not done.wait(NUDGE_S):
            _thread.interrupt_main(signal.SIGUSR1)

    threading.Thread(target=nudge, name="stop-nudge", daemon=True).start()


def calm() -> None:
    """No more nudges (the in-process run has let go), and none still on its way."""
    while _NUDGING:
        _NUDGING.pop().set()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
