"""The stack's processes: started in the background, found again, waited for and stopped.

A `Service` is one process to run (argv, environment, working directory, and how to tell
it is ready: a URL that answers 200, or a line in its log). `start` runs it in a process
group of its own, its output appended to `<root>/logs/<name>.log`, and writes
`<root>/run/<name>.pid` with its pid and start time, so `running_pid` never takes a later
process that reuses the pid for it; `stop` signals each service's whole process tree
(SIGTERM, then SIGKILL after a grace) and removes its PID file; `wait_ready` waits for it
to be ready or raises `StartFailed` with the end of its log.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

STOP_GRACE_S = 20
LOG_TAIL = 20


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    url: str = ""  # polled until it answers 200; else "up" = alive and `ready_line` in its log
    ready_line: str = ""


def _pid_file(root: Path, name: str) -> Path:
    return root / "run" / f"{name}.pid"


def log_file(root: Path, name: str) -> Path:
    return root / "logs" / f"{name}.log"


def _start_time(pid: int) -> str | None:
    """When `pid` started: tells our process from a later one that reuses its pid."""
    try:
        return repr(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def running_pid(root: Path, name: str) -> int | None:
    """The pid of service `name` if the process its PID file names is still that process."""
    path = _pid_file(root, name)
    try:
        pid_text, started = path.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == started else None


def start(service: Service, root: Path) -> int:
    log, pid_path = log_file(root, service.name), _pid_file(root, service.name)
    for d in (log.parent, pid_path.parent, service.cwd):
        d.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            service.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=service.env,
            cwd=service.cwd,
            start_new_session=True,  # its own group: stopping it takes its children too
        )
    pid_path.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants. Airflow runs each task in a process group of
    its own, so signalling the service's group alone would leave running tasks behind."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(root: Path, names: list[str], grace_s: float = STOP_GRACE_S) -> list[str]:
    """SIGTERM the services and all their descendants at once, wait, SIGKILL what is left.

    Returns the names that were running. A Celery worker stops warmly on SIGTERM (its
    task's supervisor fails the task, which Airflow then retries).
    """
    pids = {name: running_pid(root, name) for name in names}
    for name in names:
        _pid_file(root, name).unlink(missing_ok=True)
    family = [proc for pid in pids.values() if pid for proc in process_tree(pid)]
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    late = [p for pid in pids.values() if pid for p in process_tree(pid)]  # started meanwhile
    for proc in alive + late:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive + late, timeout=5)
    return [name for name, pid in pids.items() if pid]


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _ready(service: Service, root: Path, since: int) -> bool:
    if service.url:
        return _answers(service.url)
    if service.ready_line:
        with log_file(root, service.name).open("rb") as f:
            f.seek(since)
            return service.ready_line.encode() in f.read()
    return True


class StartFailed(RuntimeError):
    """A service exited or did not become ready; the message has the tail of its log."""


def wait_ready(service: Service, root: Path, since: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = running_pid(root, service.name)
        if pid is None or _is_zombie(pid):
            raise StartFailed(
                f"{service.name} exited at start; the end of {log_file(root, service.name)}:\n"
                + tail(log_file(root, service.name))
            )
        if _ready(service, root, since):
            return
        time.sleep(0.5)
    raise StartFailed(
        f"{service.name} not ready after {timeout_s:.0f} s; the end of "
        f"{log_file(root, service.name)}:\n" + tail(log_file(root, service.name))
    )


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While in the block, SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so `finally`
    blocks run (and pytest stops the session); Python's default would end the process on
    the spot. A second SIGTERM is ignored while the teardown runs. Only the main thread
    can set a handler: elsewhere the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
