"""A real `python -m pipeline serve` for tests: tiny registered models, start and stop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest
import requests

_SHARED: dict[str, Any] = {}  # the session's serving store: trained once for every module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    env: dict[str, str], port: int, log: Path, ticker: str = "GOOG", timeout_s: float = 120
) -> subprocess.Popen[bytes]:
    out: IO[bytes] = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--ticker", ticker, "--port", str(port)],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server did not come up: {log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:  # the group is gone already (a test stopped it)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def serving_store(factory: pytest.TempPathFactory, versions: int = 1) -> Path:
    """A throw-away store with `versions` tiny GOOG models registered (seeds 1, 2, ...),
    v1 in production; shared by every serving test module of the session, each version
    trained once, when first asked for. Model versions are `str(seed)`."""
    from pipeline.config import throwaway_config
    from pipeline.lifecycle import promotion
    from pipeline.orchestration import steps

    from .conftest import DAY, TINY, model_half

    if "root" not in _SHARED:
        root = factory.mktemp("serving")
        cfg = throwaway_config(root, TINY)
        carry = steps.start("GOOG", DAY, "prepared")
        _SHARED.update(
            root=root,
            prepared=steps.run_steps(cfg, carry, ["ingest", "validate", "features"]),
            versions=0,
        )
    root = _SHARED["root"]
    while _SHARED["versions"] < versions:
        seed = _SHARED["versions"] + 1
        # naive_margin 0.5: no version passes the gate by itself; v1 is promoted by hand
        # (and no HAR fallback: the versions here are the seeds' LSTMs)
        cfg = throwaway_config(
            root, TINY, registry__naive_margin=0.5, registry__serve_fallback=False, tune__seed=seed
        )
        model_half(cfg, _SHARED["prepared"], f"serve-{seed}")
        if seed == 1:
            promotion.promote(cfg, "GOOG", "1", "serve v1", "test", force=True)
        _SHARED["versions"] = seed
    return Path(root)


def group_gone(pgid: int) -> bool:
    """No live process left in the process group (zombies awaiting their reaper count as gone)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True
