"""One run at a time on a state: `make run`, the replay, `dag-test` and `make ui` (whose
scheduler runs the DAGs) hold an exclusive lock on every store they write while they run:
the state directory, Airflow's home, and the tracking and Optuna stores where those are
SQLite files (two states sharing them would tangle their runs in Airflow's metadata DB).

A second one is refused at once with who holds it (pid, command, since when) instead of
both running the same tasks: Airflow's `dags test` of a day deletes that day's earlier
run under it, and a scheduler would resume runs a person thought stopped. The lock is the
kernel's (flock): it goes with the process that held it, however that process ended.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import Config


class Busy(RuntimeError):
    """The state is held by another run."""


def stores(cfg: Config) -> list[tuple[str, Path]]:
    """Every store a run writes that lives in files here, with its lock file: the state,
    Airflow's home (its metadata DB), and the tracking and Optuna stores where they are
    SQLite files. Servers (PostgreSQL, an MLflow server) keep their own order."""
    out = [("the state", cfg.layout.root / "run.lock")]
    home = os.environ.get("AIRFLOW_HOME")
    if home and not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        out.append(("Airflow's metadata DB", Path(home) / "run.lock"))
    for what, url in (
        ("the tracking store", cfg.tracking_uri),
        ("the Optuna storage", cfg.optuna_storage),
    ):
        if url.startswith("sqlite:///"):
            db = Path(url.removeprefix("sqlite:///"))
            out.append((what, db.with_name(f"{db.name}.run.lock")))
    seen: dict[Path, str] = {}
    for what, lock in out:
        seen.setdefault(lock.resolve(), what)
    return [(what, lock) for lock, what in seen.items()]


@contextlib.contextmanager
def hold(cfg: Config, what: str) -> Iterator[None]:
    """The run's lock on every store it writes (stores()), or Busy naming the store and
    who holds it; a held lock's files are never removed (`make clean` keeps them)."""
    import fcntl

    since = dt.datetime.now().isoformat(timespec="seconds")
    me = json.dumps({"pid": os.getpid(), "what": what, "since": since})
    with contextlib.ExitStack() as held:
        for store, lock in stores(cfg):
            lock.parent.mkdir(parents=True, exist_ok=True)
            handle = held.enter_context(lock.open("a"))
            holder = lock.with_name(lock.name.replace(".lock", ".holder.json"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy(
                    f"refused: {describe(holder)} holds {store} ({lock.parent}; one run at a time)"
                ) from None
            holder.write_text(me)
            held.callback(holder.unlink, missing_ok=True)
        from pipeline.orchestration import stop

        stop.clear(cfg)  # a stop asked of an earlier run is not this one's
        yield


def describe(holder: os.PathLike[str]) -> str:
    try:
        info = json.loads(open(holder).read())  # noqa: SIM115 - a small read
    except (OSError, ValueError):
        return "another run"
    return f"`{info.get('what')}` (pid {info.get('pid')}, since {info.get('since')})"


def clean(roots: list[Path], keep: tuple[str, ...] = ("README.md",)) -> int:
    """`make clean`: remove everything under `roots` but their own `keep` files, unless a
    run holds one of the locks in them (then nothing is removed: exit 2 naming it). Held
    while it removes, the lock files themselves stay: a held lock is never removed."""
    import fcntl
    import shutil
    import sys

    locks = sorted({f for r in roots if r.exists() for f in r.rglob("*run.lock")})
    with contextlib.ExitStack() as held:
        for lock in locks:
            handle = held.enter_context(lock.open("a"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock.with_name(lock.name.replace(".lock", ".holder.json"))
                print(f"refused: {describe(holder)} holds {lock}; nothing removed", file=sys.stderr)
                return 2
        spared = set(locks)
        for root in roots:
            for path in sorted(root.glob("*")) if root.exists() else []:
                if path.name in keep or path in spared:
                    continue
                if path.is_dir() and not any(lock.is_relative_to(path) for lock in spared):
                    shutil.rmtree(path)
                elif path.is_dir():  # a lock inside: remove around it
                    for inner in sorted(path.rglob("*"), reverse=True):
                        if inner in spared or any(lock.is_relative_to(inner) for lock in spared):
                            continue
                        inner.rmdir() if inner.is_dir() else inner.unlink()
                else:
                    path.unlink()
    return 0
