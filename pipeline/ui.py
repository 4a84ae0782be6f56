"""`python -m pipeline ui` (`make ui`): Airflow, MLflow and Optuna dashboards on localhost.

Runs the three as child processes, prints their URLs and the Airflow login, and
stops them all on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import Config


def commands(cfg: Config) -> dict[str, tuple[list[str], str]]:
    bin_dir = Path(sys.executable).parent
    return {
        "airflow": ([str(bin_dir / "airflow"), "standalone"], "http://127.0.0.1:8080"),
        "mlflow": (
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                cfg.tracking_uri,
                "--host",
                "127.0.0.1",
                "--port",
                "5000",
            ],
            "http://127.0.0.1:5000",
        ),
        "optuna": (
            [
                str(bin_dir / "optuna-dashboard"),
                cfg.optuna_storage,
                "--host",
                "127.0.0.1",
                "--port",
                "8081",
            ],
            "http://127.0.0.1:8081",
        ),
    }


def airflow_login(home: Path, wait_s: float = 60) -> str:
    """Airflow standalone writes the generated admin password to a file on first start."""
    deadline = time.monotonic() + wait_s
    for name in ("simple_auth_manager_passwords.json.generated", "standalone_admin_password.txt"):
        path = home / name
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(1)
        if path.exists():
            return path.read_text().strip()
    return f"see {home} (the password file appears once Airflow has started)"


def run(cfg: Config) -> int:
    logs = cfg.layout.logs_dir()
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent  # `airflow standalone` starts `airflow ...` from PATH
    env = {
        **os.environ,
        "AIRFLOW__API__PORT": "8080",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, (argv, url) in commands(cfg).items():
        out = (logs / f"ui-{name}.log").open("wb")
        procs[name] = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )  # own group: stop takes all
        print(f"{name:8s} {url}   (log: {logs / f'ui-{name}.log'})", flush=True)
    home = Path(os.environ.get("AIRFLOW_HOME", cfg.layout.airflow_home()))
    print(f"airflow login (user admin): {airflow_login(home)}", flush=True)
    print("Ctrl-C stops all three.", flush=True)
    try:
        while not (exited := [n for n, p in procs.items() if p.poll() is not None]):
            time.sleep(1)
        for name in exited:  # e.g. a port already taken: its log says so
            print(
                f"{name} exited with code {procs[name].returncode}; see "
                f"{logs / f'ui-{name}.log'}. Stopping the others.",
                flush=True,
            )
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
