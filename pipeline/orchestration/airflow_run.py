"""Running the DAGs through real Airflow, from the command line.

`dag_test` runs one DAG for a day as `airflow dags test` in its own session (SIGTERM or
SIGINT stops it and every process it started), printing each task as it starts and ends
from the journal the tasks write; `in_process` is the same through `dag.test()` in this
process (the replay: no start-up per run). Airflow's own output goes to
state/logs/<dag>-<date>.log. Also: the Airflow settings the CLI uses outside make, the
first-use migration of its metadata DB, and `python -m pipeline dag-test`.
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
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT, Config
from pipeline.orchestration import journal, stop

DAGS = PROJECT_ROOT / "dags"

_SIGNALS = ("ERROR", "Traceback", "Error:", "FAIL ", "ValidationFailed", "GX Data Docs",
            "not retried", "retrying in", "not started: the run was stopped")  # fmt: skip


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
    with log_path.open("w") as out, stop_on_signals(cfg) as stopped:
        # its own session: a stop reaches every process it starts (task runners included)
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
            preexec_fn=_killed_with_parent,  # a prctl only, before the exec
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
def stop_on_signals(cfg: Config) -> Iterator[list[int]]:
    """While in the block, SIGTERM and SIGINT are noted (the list gets the signal) instead
    of killing this process mid-way, and the stop is asked at once (stop.ask: no task
    starts from then on); the caller stops what it started, then returns."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def note(signum: int, _frame: object) -> None:
        if not got:
            stop.ask(cfg, signum)
        got.append(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, note)
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
        except KeyboardInterrupt:  # a stop (stop.on_signals): nothing more of this run
            stop.calm()
            run = None
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
    if code := stop.exit_code(cfg):
        print(f"stopped {dag_id} for {day} ({stop.asked(cfg)}).", flush=True)
        return code
    ok = run is not None and str(getattr(run, "state", "")) in ("success", "DagRunState.SUCCESS")
    if not ok:
        print(f"{dag_id} FAILED for {day}; see {log_path}")
    return 0 if ok else 1


def _print_progress(cfg: Config, dag_id: str, day: dt.date, began: float, seen: int) -> int:
    events = [e for e in journal.read(cfg, dag_id, day) if e["t"] >= began - 1]
    for event in events[seen:]:
        print("  " + journal.describe(event, began), flush=True)
    return max(seen, len(events))


# What `make` exports for Airflow, for the same commands run without it: the project's own
# Airflow home and DAGs, never ~/airflow or Airflow's examples.
AIRFLOW_DEFAULTS = {
    "AIRFLOW_HOME": str(PROJECT_ROOT / "state" / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    # TensorFlow's C++ start-up lines (oneDNN, CPU features) on every command's stderr
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def stop_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: get `signum` when the parent dies. `make run` stopped by SIGTERM (what kill,
    timeout and supervisors send) exits without passing it on; this way the run hears it
    and stops what it started."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signum))


def _killed_with_parent() -> None:
    """`airflow dags test`'s own: killed outright with its parent. Its task runner ignores
    SIGTERM, so a parent killed without a chance to stop it (SIGKILL) would leave it
    training and writing, with the run lock gone with the parent."""
    stop_with_parent(signal.SIGKILL)


def dag_test_command(cfg: Config, dag_id: str, day: dt.date) -> int:
    """`python -m pipeline dag-test`: one run, then where its outputs are."""
    ensure_airflow_db()
    rc = dag_test(cfg, dag_id, day)
    if rc != 0:
        return rc if rc >= 128 else 1
    print(f"{dag_id} succeeded for {day}.")
    print(json.dumps(outputs(cfg, day), indent=2))
    print("next: `make serve` (REST on the production model), `make ui` (Airflow, MLflow, Optuna)")
    return 0


def models(cfg: Config) -> dict[str, object]:
    """Per ticker: the newest version, the gate's verdict on it, and what is in production."""
    from pipeline.lifecycle import registry

    out: dict[str, object] = {}
    for ticker in cfg.tickers:
        name = registry.model_name(cfg, ticker)
        cand = registry.version_by_alias(cfg, name, registry.CANDIDATE)
        prod = registry.production_version(cfg, ticker)
        out[name] = {
            "candidate": str(cand.version) if cand else None,
            "gate": cand.tags.get("gate_reason") if cand else None,
            "production": str(prod.version) if prod else None,
            "model_mase": cand.tags.get("model_mase") if cand else None,
            "dm_pvalue": cand.tags.get("dm_pvalue") if cand else None,
        }
    return out


def outputs(cfg: Config, day: dt.date) -> dict[str, object]:
    """Where a user looks after a run."""
    at = cfg.layout
    return {
        "models": models(cfg),
        "mlflow_tracking_uri": cfg.tracking_uri,
        "optuna_storage": cfg.optuna_storage,
        "curated": [str(p) for p in at.curated_tables()],
        "raw_pulls": [str(at.raw_path(t, day)) for t in cfg.tickers],
        "quarantine": [str(q) for t in cfg.tickers if (q := at.quarantine_dir(t, day)).exists()],
        "data_docs": str(at.data_docs() / "index.html"),
        "forecasts": str(at.forecasts_db()),
        "features": [str(f) for t in cfg.tickers if (f := at.features_dir(t, day)).exists()],
        "airflow_home": os.environ.get("AIRFLOW_HOME", ""),
    }
