import sys
from pathlib import Path
from urllib.parse import urlparse

from pipeline.config import Config
from pipeline.deployment import ui


def test_every_dashboard_listens_on_localhost_only(cfg: Config) -> None:
    commands = ui.commands(cfg)
    assert set(commands) == {"airflow", "mlflow", "optuna"}
    for name, (argv, url) in commands.items():
        assert "0.0.0.0" not in argv, name
        if "--host" in argv:
            assert argv[argv.index("--host") + 1] == "127.0.0.1", name
        assert urlparse(url).hostname == "127.0.0.1", name
        assert Path(argv[0]).parent == Path(sys.executable).parent, name
    ports = {urlparse(url).port for _, url in commands.values()}
    assert ports == {8080, 5000, 8081}
    mlflow_argv, _ = commands["mlflow"]
    assert mlflow_argv[mlflow_argv.index("--backend-store-uri") + 1] == cfg.tracking_uri
    assert commands["optuna"][0][1] == cfg.optuna_storage


def test_airflow_login_reads_the_generated_password(tmp_path: Path) -> None:
    assert ui.airflow_login(tmp_path, wait_s=0) == (
        f"see {tmp_path} (the password file appears once Airflow has started)"
    )
    (tmp_path / "standalone_admin_password.txt").write_text("old-style\n")
    assert ui.airflow_login(tmp_path, wait_s=0) == "old-style"
    (tmp_path / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "s3cret"}\n')
    assert ui.airflow_login(tmp_path, wait_s=0) == "s3cret"  # the password, not raw JSON
    for name in ("standalone_admin_password.txt", "simple_auth_manager_passwords.json.generated"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, name  # private once read


def test_tasks_reach_airflow_on_any_configured_port_with_workers_for_the_machine(
    make_cfg,  # type: ignore[no-untyped-def]
) -> None:
    import os

    env = ui.environment(make_cfg(ui__airflow_port=8093))
    assert env["AIRFLOW__API__PORT"] == "8093"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8093/execution/"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= max(2, os.cpu_count() or 2)
    assert env["AIRFLOW__API__WORKERS"] == "1"
