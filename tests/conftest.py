from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config, throwaway_config
from pipeline.data.bars import read_bars_csv
from pipeline.data.ingest import sample_path

ROOT = Path(__file__).resolve().parents[1]
# Airflow reads its home when first imported: point it at a throw-away one first.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-test-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


FIRST_RUNS: list[subprocess.CompletedProcess[str]] = []  # the two that migrated airflow_db


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the throw-away AIRFLOW_HOME: migrated by two
    first-time runs at once, as two `make run` on a fresh checkout would (their outputs
    are kept for tests/unit/test_airflow_run.py)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if not (home / ".migrated").exists():
        code = (
            "from pipeline.orchestration.airflow_run import ensure_airflow_db; ensure_airflow_db()"
        )
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        for p in racers:
            out, _ = p.communicate()
            FIRST_RUNS.append(subprocess.CompletedProcess(p.args, p.wait(), out))
    return home


@pytest.fixture(scope="session")
def sample_bars() -> pd.DataFrame:
    return read_bars_csv(sample_path())


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Config]:
    """A config whose every store lives under tmp_path; keyword args set config keys.
    One model per ticker unless `model__scope="universe"` (tests/unit/test_universe.py)."""

    def make(**keys: object) -> Config:
        return throwaway_config(tmp_path, **{"model__scope": "ticker", **keys})

    return make


@pytest.fixture
def cfg(make_cfg: Callable[..., Config]) -> Config:
    return make_cfg()


# `make test` runs on two pytest-xdist workers (--dist loadfile): a module is one unit of
# work, so its module-scoped fixtures are built once, and the longest modules start first
# while the other worker drains the rest (they wait on Airflow and subprocesses as much as
# they compute).
LONGEST_FIRST = tuple(
    f"tests/integration/{name}.py"
    for name in ("test_stack", "test_dag_run", "test_operations", "test_ui", "test_serving")
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a rank, the collection order
