"""`make ui` as a process supervisor sees it: localhost only, the one writer of its state,
and SIGTERM stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from pipeline.config import throwaway_env
from pipeline.deployment.ui import airflow_login

from .serving_support import free_port

pytestmark = pytest.mark.slow


def _listening(procs: list[psutil.Process]) -> dict[int, set[str]]:
    """Port -> addresses that the given processes listen on."""
    out: dict[int, set[str]] = {}
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                out.setdefault(c.laddr.port, set()).add(c.laddr.ip)
    return out


def check_report_plugin(airflow: str, env: dict[str, str], home: Path) -> None:
    """The report pages in Airflow's API server: refused to anyone not logged in, served
    to a logged-in user (an API token, or the UI's session cookie), listed in the UI."""
    pages = Path(env["PIPELINE__STATE_DIR"]) / "reports" / "daily"
    pages.mkdir(parents=True, exist_ok=True)
    (pages / "2013-03-01.html").write_text("<p>the day's page</p>")
    reports = f"{airflow}/forecast-reports"
    # the API server listens before every worker has mounted the plugins: wait for the route
    deadline = time.monotonic() + 90
    while (answer := requests.get(f"{reports}/", timeout=30)).status_code == 404:
        assert time.monotonic() < deadline, "the plugin's pages never appeared"
        time.sleep(1)
    assert answer.status_code == 401  # anonymous
    forged = {"Authorization": "Bearer not-a-token"}
    assert requests.get(f"{reports}/day/2013-03-01", headers=forged, timeout=30).status_code in (
        401,
        403,
    )
    password = airflow_login(home)  # the password itself, not Airflow's JSON file
    login = requests.post(
        f"{airflow}/auth/token", json={"username": "admin", "password": password}, timeout=30
    )
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    index = requests.get(f"{reports}/", headers=auth, timeout=30)
    assert index.status_code == 200 and 'href="day/2013-03-01"' in index.text
    day = requests.get(f"{reports}/day/2013-03-01", cookies={"_token": token}, timeout=30)
    assert day.status_code == 200 and day.text == "<p>the day's page</p>"
    assert requests.get(f"{reports}/day/..%2Fx", headers=auth, timeout=30).status_code == 404
    unknown = requests.get(f"{reports}/run/price_daily/manual__x", headers=auth, timeout=30)
    assert unknown.status_code == 404 and "no run" in unknown.text
    plugins = requests.get(f"{airflow}/api/v2/plugins", headers=auth, timeout=30).json()
    ours = next(p for p in plugins["plugins"] if p["name"] == "forecast_reports")
    assert {v["destination"] for v in ours["external_views"]} == {"nav", "dag_run"}


def test_dashboards_bind_localhost_and_sigterm_stops_them_all(
    airflow_db: Path, tmp_path: Path
) -> None:
    ports = {"airflow": free_port(), "mlflow": free_port(), "optuna": free_port()}
    env = {
        **os.environ,
        **throwaway_env(tmp_path),
        **{f"PIPELINE__UI__{k.upper()}_PORT": str(v) for k, v in ports.items()},
    }
    ui = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ui"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        listening: dict[int, set[str]] = {}
        while time.monotonic() < deadline and not set(ports.values()) <= set(listening):
            assert ui.poll() is None, (ui.stdout.read() if ui.stdout else b"")[-2000:]
            family = psutil.Process(ui.pid).children(recursive=True)
            listening = _listening(family)
            time.sleep(1)
        for name, port in ports.items():
            assert listening.get(port) == {"127.0.0.1"}, (name, listening)
        check_report_plugin(f"http://127.0.0.1:{ports['airflow']}", env, airflow_db)
        # its scheduler runs the DAGs: `make run` on the same state is refused, not raced
        run = subprocess.run(
            [sys.executable, "-m", "pipeline", "daily", "2013-03-01"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2 and "pipeline ui" in run.stderr + run.stdout, run
        family = psutil.Process(ui.pid).children(recursive=True)
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], alive
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
        for proc in family:
            if proc.is_running():
                proc.kill()
