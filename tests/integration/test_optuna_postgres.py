"""The study storage is any SQLAlchemy URL: the same tune step on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest

from pipeline import tune
from pipeline.config import Config

pytestmark = pytest.mark.slow
SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    import psycopg2

    try:
        admin = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        )
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"this test needs PostgreSQL on 127.0.0.1:5432 with trust auth for user "
            f"postgres (start it: pg_ctlcluster <version> main start): {exc}"
        )
    admin.autocommit = True
    name = f"optuna_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield f"{SERVER}/{name}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_tune_resumes_on_postgres(
    postgres_url: str, tiny_cfg: Callable[..., Config], prepared: dict[str, Any]
) -> None:
    cfg = tiny_cfg(tune__storage=postgres_url, tune__n_trials=1)
    tune.run(cfg, "GOOG", "pg-day", prepared["features_path"], "pg-run")
    again = tune.run(
        tiny_cfg(tune__storage=postgres_url, tune__n_trials=2),
        "GOOG",
        "pg-day",
        prepared["features_path"],
        "pg-run",
    )
    assert again["trials"] == 2
    study = optuna.load_study(study_name="GOOG-pg-day", storage=postgres_url)
    assert len(study.trials) == 2 and study.best_value is not None
