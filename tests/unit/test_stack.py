"""pipeline/deployment/processes.py's bookkeeping, on throw-away processes, and stack.py's
status (the stack itself: tests/integration/test_stack.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.deployment import processes, stack


def _service(name: str, code: str, tmp_path: Path, **kw: str) -> processes.Service:
    return processes.Service(name, [sys.executable, "-c", code], dict(os.environ), tmp_path, **kw)


def test_start_records_the_process_and_stop_ends_its_group(tmp_path: Path) -> None:
    svc = _service(
        "sleeper",
        "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)",
        tmp_path,
    )
    pid = processes.start(svc, tmp_path)
    assert processes.running_pid(tmp_path, "sleeper") == pid
    assert processes.stop(tmp_path, ["sleeper"], grace_s=5) == ["sleeper"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the child `sleep` went with it
    assert processes.running_pid(tmp_path, "sleeper") is None
    assert processes.stop(tmp_path, ["sleeper"]) == []  # nothing left to stop


def test_a_reused_pid_is_not_taken_for_the_service(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ghost.pid").write_text(f"{os.getpid()} 1\n")  # wrong start time
    assert processes.running_pid(tmp_path, "ghost") is None
    assert processes.stop(tmp_path, ["ghost"]) == []  # and it is never signalled
    assert os.path.exists(f"/proc/{os.getpid()}")


def test_a_service_that_dies_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    svc = _service("broken", "print('port 8080 is taken'); raise SystemExit(3)", tmp_path,
                   url="http://127.0.0.1:9/")  # fmt: skip
    processes.start(svc, tmp_path)
    with pytest.raises(
        processes.StartFailed, match=r"(?s)broken exited at start.*port 8080 is taken"
    ):
        processes.wait_ready(svc, tmp_path, 0, timeout_s=30)


def test_readiness_by_log_line_counts_only_this_start(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = processes.log_file(tmp_path, "w")
    log.write_text("w ready.\n")  # an earlier start's line
    since = log.stat().st_size
    svc = _service("w", "import time; time.sleep(30)", tmp_path, ready_line=" ready.")
    processes.start(svc, tmp_path)
    try:
        with pytest.raises(processes.StartFailed, match="w not ready after 2 s"):
            processes.wait_ready(svc, tmp_path, since, timeout_s=2)
        processes.wait_ready(svc, tmp_path, 0, timeout_s=2)  # the whole log does have it
    finally:
        processes.stop(tmp_path, ["w"], grace_s=5)


def test_status_says_what_is_down(cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.status(cfg) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and all(" down" in line for line in lines)


def test_an_unreachable_postgres_or_redis_is_named(
    make_cfg, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integration.serving_support import free_port

    port = free_port()  # nothing listens there
    assert stack.up(make_cfg(stack__postgres_port=port)) == 1
    assert (
        f"PostgreSQL at 127.0.0.1:{port} (user postgres) is not reachable"
        in capsys.readouterr().out
    )
    assert stack.up(make_cfg(stack__redis_port=port)) == 1
    assert f"Redis at 127.0.0.1:{port} is not reachable" in capsys.readouterr().out


def test_mlflow_users_command_refuses_what_it_cannot_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """compose's one-shot `mlflow-init`: a missing secret is rc 2, a server not up yet rc 1."""
    from pipeline.cli import main

    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert main(["stack", "mlflow-users"]) == 2
    assert "MLFLOW_TRACKING_PASSWORD is not set" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["stack", "mlflow-users"]) == 1
    assert "could not set up MLflow accounts at 'http://127.0.0.1:9'" in capsys.readouterr().err
