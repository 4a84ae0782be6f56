"""The study storage is any SQLAlchemy URL: the same tune step on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import optuna
import pytest

from pipeline.config import Config
from pipeline.orchestration import steps
from pipeline.orchestration.carry import Carry

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
    postgres_url: str, tiny_cfg: Callable[..., Config], prepared: Carry
) -> None:
    carry: Carry = {**prepared, "day": "2013-01-02", "pipeline_run_id": "pg-run"}
    for n_trials in (1, 2):  # the second call is the retried task: it resumes the study
        cfg = tiny_cfg(tune__storage=postgres_url, tune__n_trials=n_trials)
        done = steps.run_steps(cfg, carry, ["tune", "best"])
    assert done["trials"] == 2
    study = optuna.load_study(study_name="GOOG-2013-01-02", storage=postgres_url)
    assert len(study.trials) == 2 and study.best_value is not None
