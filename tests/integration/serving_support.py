"""Start and stop a real `python -m pipeline serve` (mlflow models serve) for tests and benches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import requests


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
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
