"""`python -m pipeline ui` (`make ui`): Airflow, MLflow and Optuna dashboards on localhost.

Runs the three as child processes, each in its own process group, prints their
URLs and the Airflow login, and stops every group on Ctrl-C or SIGTERM (what a
process supervisor sends), waiting for them and killing what does not stop.
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
from pipeline.deployment.processes import sigterm_unwinds
from pipeline.layout import ensure_sqlite_dir

STOP_GRACE_S = 20


def commands(cfg: Config) -> dict[str, tuple[list[str], str]]:
    bin_dir, u = Path(sys.executable).parent, cfg.ui
    return {  # Airflow's API server takes its host and port from the env (see environment())
        "airflow": ([str(bin_dir / "airflow"), "standalone"], f"http://{u.host}:{u.airflow_port}"),
        "mlflow": (
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                cfg.tracking_uri,
                "--host",
                u.host,
                "--port",
                str(u.mlflow_port),
            ],
            f"http://{u.host}:{u.mlflow_port}",
        ),
        "optuna": (
            [
                str(bin_dir / "optuna-dashboard"),
                cfg.optuna_storage,
                "--host",
                u.host,
                "--port",
                str(u.optuna_port),
            ],
            f"http://{u.host}:{u.optuna_port}",
        ),
    }


def environment(cfg: Config) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent  # `airflow standalone` starts `airflow ...` from PATH
    api = f"http://{cfg.ui.host}:{cfg.ui.airflow_port}"
    cores = os.cpu_count() or 2
    return {
        **os.environ,
        "AIRFLOW__API__HOST": cfg.ui.host,  # Airflow would listen on every interface
        "AIRFLOW__API__PORT": str(cfg.ui.airflow_port),
        # the tasks reach the API server where it listens, on any configured port
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        # worker counts that fit the machine (Airflow's defaults: 32 task slots, 4 API workers)
        "AIRFLOW__CORE__PARALLELISM": str(max(2, cores)),
        "AIRFLOW__API__WORKERS": "1",
        # MLflow's server also starts job consumers (some 8 processes) for GenAI jobs this
        # project never submits
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def airflow_login(home: Path, wait_s: float = 60) -> str:
    """The admin's password, which Airflow standalone generates on first start (in a JSON
    file of user -> password, or a plain one in older versions)."""
    import json

    deadline = time.monotonic() + wait_s
    for name in ("simple_auth_manager_passwords.json.generated", "standalone_admin_password.txt"):
        path = home / name
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(1)
        if path.exists():
            path.chmod(0o600)  # Airflow writes it world-readable
            text = path.read_text().strip()
            try:
                users = json.loads(text)
            except ValueError:
                return text
            return str(users.get("admin", text)) if isinstance(users, dict) else text
    return f"see {home} (the password file appears once Airflow has started)"


def prepare_stores(cfg: Config) -> None:
    """Create the Optuna storage if no run has yet: the dashboard dies on an empty SQLite."""
    import optuna

    optuna.storages.RDBStorage(ensure_sqlite_dir(cfg.optuna_storage))


def stop_groups(procs: dict[str, subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM every child's process group, wait, then SIGKILL whatever is left of them."""
    for proc in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):  # grandchildren outliving their leader
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(cfg: Config) -> int:
    logs = cfg.layout.logs_dir()
    logs.mkdir(parents=True, exist_ok=True)
    env = environment(cfg)
    prepare_stores(cfg)
    with sigterm_unwinds():  # SIGTERM takes the same way out as Ctrl-C
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, (argv, url) in commands(cfg).items():
                out = (logs / f"ui-{name}.log").open("wb")
                procs[name] = subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )  # own group: stop takes all
                print(f"{name:8s} {url}   (log: {logs / f'ui-{name}.log'})", flush=True)
            home = Path(os.environ.get("AIRFLOW_HOME", cfg.layout.airflow_home()))
            print(f"airflow login: user admin, password {airflow_login(home)}", flush=True)
            print("Ctrl-C stops all three.", flush=True)
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
            signal.signal(
                signal.SIGTERM, signal.SIG_IGN
            )  # a second SIGTERM must not cut this short
            stop_groups(procs, STOP_GRACE_S)
