"""One run at a time on a state: `make run`, the replay, `dag-test` and `make ui` (whose
scheduler runs the DAGs) hold an exclusive lock on the state directory while they run.

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

from pipeline.config import Config


class Busy(RuntimeError):
    """The state is held by another run."""


@contextlib.contextmanager
def hold(cfg: Config, what: str) -> Iterator[None]:
    import fcntl

    root = cfg.layout.root
    root.mkdir(parents=True, exist_ok=True)
    lock, holder = root / "run.lock", root / "run.holder.json"
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"refused: {describe(holder)} holds {root} (one run at a time)") from None
        since = dt.datetime.now().isoformat(timespec="seconds")
        holder.write_text(json.dumps({"pid": os.getpid(), "what": what, "since": since}))
        from pipeline.orchestration import stop

        stop.clear(cfg)  # a stop asked of an earlier run is not this one's
        try:
            yield
        finally:
            holder.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def describe(holder: os.PathLike[str]) -> str:
    try:
        info = json.loads(open(holder).read())  # noqa: SIM115 - a small read
    except (OSError, ValueError):
        return "another run"
    return f"`{info.get('what')}` (pid {info.get('pid')}, since {info.get('since')})"
