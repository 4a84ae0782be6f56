"""`make run` / `python -m pipeline daily DATE`: one trading day, as the scheduler runs it.

The daily DAG for the universe, through real Airflow (`airflow dags test`); before it, on
a state where some ticker has no production model, the retrain DAG (nothing could
forecast yet); after it, the retrain the day's report asks for, as its asset event would
schedule it. While they run, each task's start and end is printed (from the journal the
tasks write); at the end, the day's table. Exit 0 when every ticker's day went through,
1 when any failed (its reason is in the table), 2 when a DAG run itself failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import daily, journal, registry
from pipeline.config import PROJECT_ROOT, Config
from pipeline.dates import is_session

DAGS = PROJECT_ROOT / "dags"

_SIGNALS = ("ERROR", "Traceback", "Error:", "FAIL ", "ValidationFailed")


def dag_test(
    cfg: Config,
    dag_id: str,
    day: dt.date,
    conf: dict[str, Any] | None = None,
    progress: bool = True,
) -> int:
    """Run one DAG for `day` in Airflow, printing its tasks as they start and end; Airflow's
    own output goes to state/logs/<dag>-<day>.log. Returns the exit status."""
    log_path = cfg.layout.run_log(dag_id, day)
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow), "dags", "test", dag_id, day.isoformat()]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    if progress:
        print(f"{dag_id} for {day} (Airflow's log: {log_path})", flush=True)
    began = time.time()
    seen = 0
    with log_path.open("w") as out, stop_on_signals() as stopped:
        # its own session: a stop reaches every process it starts (task runners included)
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        while True:
            done = proc.poll() is not None
            if progress:
                seen = _print_progress(cfg, dag_id, day, began, seen)
            if stopped:  # also when it ended just now: nothing more may start
                return stop_group(proc, stopped[0], f"{dag_id} for {day}")
            if done:
                break
            time.sleep(0.5)
    if proc.returncode != 0:
        text = log_path.read_text(errors="replace").splitlines()
        print(f"{dag_id} FAILED for {day} (exit {proc.returncode}). From {log_path}:")
        for line in [ln for ln in text if any(s in ln for s in _SIGNALS)][-25:]:
            print("  " + line[:300])
    return proc.returncode


def ensure_airflow_db() -> None:
    """Migrate Airflow's SQLite metadata DB if there is none yet, under a lock: two
    first-time runs must not migrate one database at once."""
    import fcntl

    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return  # a deployment's database: migrated by its own tooling
    home = Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / "state" / "airflow")
    # done: written once a migration finished; a DB file alone may be an interrupted one's
    # (.migrating still there), or one migrated before these markers (none: trusted)
    done, migrating = home / ".migrated", home / ".migrating"
    if done.exists() or ((home / "airflow.db").exists() and not migrating.exists()):
        return
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the second run waits here, then finds it done
        if done.exists():
            return
        migrating.touch()
        print(f"creating Airflow's metadata DB in {home} ...", flush=True)
        log = home / "migrate.log"
        with log.open("w") as out:
            rc = subprocess.call(
                [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError("airflow db migrate failed:\n" + "\n".join(tail))
        done.touch()
        migrating.unlink(missing_ok=True)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """While in the block, SIGTERM and SIGINT are noted (the list gets the signal) instead
    of killing this process mid-way: the caller stops what it started, then returns."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: got.append(signum))
    try:
        yield got
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(proc: subprocess.Popen[bytes], signum: int, what: str, grace_s: float = 3) -> int:
    """Stop a child started in its own session and everything in it: SIGTERM, then after
    `grace_s` SIGKILL (Airflow's task runner would first try to finish up its task);
    returns 128 + signum, the shell's code for death by that signal."""
    name = signal.Signals(signum).name
    print(f"{name}: stopping {what} and every process it started ...", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # anything of the session still there
        os.killpg(proc.pid, signal.SIGKILL)
    print(f"stopped {what}.", flush=True)
    return 128 + signum


Runner = Callable[..., int]  # dag_test's signature: (cfg, dag_id, day, conf, progress) -> rc


@functools.cache
def _dag_bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or str(DAGS))


def in_process(
    cfg: Config,
    dag_id: str,
    day: dt.date,
    conf: dict[str, Any] | None = None,
    progress: bool = False,
) -> int:
    """dag_test without a new process per run (`dag.test()` here: the replay's many runs
    skip Airflow's and TensorFlow's start-up, about 10 s each); Airflow's output still goes
    to the run's log file."""
    log_path = cfg.layout.run_log(dag_id, day)
    when = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            run = _dag_bag().get_dag(dag_id).test(logical_date=when, run_conf=conf)
        except Exception as exc:
            print(f"{dag_id} for {day} raised {type(exc).__name__}: {exc}", flush=True)
            run = None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    ok = run is not None and str(getattr(run, "state", "")) in ("success", "DagRunState.SUCCESS")
    if not ok:
        print(f"{dag_id} FAILED for {day}; see {log_path}")
    return 0 if ok else 1


def _print_progress(cfg: Config, dag_id: str, day: dt.date, began: float, seen: int) -> int:
    events = [e for e in journal.read(cfg, dag_id, day) if e["t"] >= began - 1]
    for event in events[seen:]:
        print("  " + journal.describe(event, began), flush=True)
    return max(seen, len(events))


def unserved(cfg: Config) -> list[str]:
    """Configured tickers no production model can serve."""
    return [t for t in cfg.tickers if registry.production_version(cfg, t) is None]


@dataclass
class Day:
    """What one trading day did: its report, the retrains it ran and why, the exit code."""

    rc: int
    report: dict[str, Any] | None = None
    retrains: list[dict[str, Any]] = field(default_factory=list)

    def retrain_note(self) -> str:
        return "; ".join(
            f"{r['when']}: {daily.why(r['reasons'])} ({r['mode']})" for r in self.retrains
        )


def retrain(
    cfg: Config,
    day: dt.date,
    out: Day,
    when: str,
    conf: dict[str, Any],
    progress: bool,
    runner: Runner = dag_test,
) -> bool:
    """The retrain DAG for `day` as its schedule would run it; recorded in `out`."""
    rc = runner(cfg, daily.RETRAIN, day, {"day": day.isoformat(), **conf}, progress)
    if rc >= 128:  # stopped by a signal
        out.rc = rc
    mode = conf.get("mode") or ("refit" if conf.get("reasons") else "tune")
    out.retrains.append({"day": day.isoformat(), "when": when, "mode": mode, "ok": rc == 0,
                         "reasons": conf.get("reasons") or {}})  # fmt: skip
    return rc == 0


def one_day(cfg: Config, day: dt.date, progress: bool = True, runner: Runner = dag_test) -> Day:
    """The day end to end; see the module docstring."""
    out = Day(rc=0)
    if missing := unserved(cfg):
        conf = {"reasons": {t: ["no_production"] for t in missing}, "mode": "tune"}
        if not retrain(cfg, day, out, "before the day", conf, progress, runner):
            out.rc = out.rc or 2
            return out
    daily.report_path(cfg, day).unlink(missing_ok=True)  # only this run's report counts
    rc = runner(cfg, daily.DAILY, day, None, progress)
    if rc >= 128:  # stopped by a signal: nothing more runs
        out.rc = rc
        return out
    path = daily.report_path(cfg, day)
    if not path.exists():
        out.rc = 2
        return out
    out.report = json.loads(path.read_text())
    asked = out.report["retrain"]
    if (
        asked
        and not out.retrains
        and not retrain(cfg, day, out, "after the day", {"reasons": asked}, progress)
    ):
        out.rc = 2
        return out
    out.rc = 1 if daily.failed_tickers(out.report) else (0 if rc == 0 else 2)
    return out


FIRST_DAY = dt.date(2000, 1, 1)  # the DAGs' start_date: Airflow runs nothing before it


def day_problem(cfg: Config, day: dt.date, today: dt.date | None = None) -> str | None:
    """Why `day` cannot run at all (it would fail the same way on every retry), or None."""
    today = today or dt.date.today()
    if day > today:
        return f"{day} is in the future (today is {today}): there are no bars for it yet"
    if day < FIRST_DAY:
        return f"{day} is before the DAGs' start date {FIRST_DAY}: Airflow would run nothing"
    return None


def run_day(cfg: Config, day: dt.date) -> int:
    """`make run`: one day with progress, then the day's table."""
    if problem := day_problem(cfg, day):
        print(f"refused: {problem}", file=sys.stderr)
        return 2
    if not is_session(day, cfg.validation.calendar):
        print(f"{day} is not a {cfg.validation.calendar} session: nothing to do")
        return 0
    ensure_airflow_db()
    out = one_day(cfg, day)
    if out.report is not None:
        print()
        print(daily.table(out.report, out.retrain_note()))
        print(f"report: {daily.report_path(cfg, day)}; forecasts: {cfg.layout.forecasts_db()}")
        print(
            "next: `make serve` (REST on the production model), `make ui` (Airflow, MLflow, Optuna)"
        )
    return out.rc
