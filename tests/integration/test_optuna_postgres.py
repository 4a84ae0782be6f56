"""The stores on a real PostgreSQL, as the stack runs them: the tune step with its study
there, and MLflow tags that parallel tuning tasks write to one run at the same instant."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator

import optuna
import pytest

from pipeline import tracking
from pipeline.carry import Carry
from pipeline.config import Config
from pipeline.orchestration import steps

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


def _at_once(action: Callable[[], object]) -> list[Exception]:
    """`action` in two threads released at one instant; what either raised."""
    barrier, raised = threading.Barrier(2), []

    def go() -> None:
        barrier.wait()
        try:
            action()
        except Exception as exc:  # whatever the race raises is what is counted
            raised.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return raised


def _lost_races(tag: Callable[[str], None], runs: list[str]) -> int:
    """Two writers of the same first tag of each run at one instant; how many failed."""
    return sum(len(_at_once(lambda r=run_id: tag(r))) for run_id in runs)


def test_parallel_tasks_tag_one_run_without_losing_a_race(postgres_url: str) -> None:
    """The two tuning tasks of a retrain tag the day's parent run as they start. MLflow's
    set_tag looks for the tag, then inserts it: the second writer fails on the key (a
    tuning task failed and was retried for it). tracking.log_batch goes through MLflow's
    log_batch, which retries such a conflict."""
    from mlflow import MlflowClient

    mc = MlflowClient(postgres_url)
    exp = mc.create_experiment("race")
    runs = [mc.create_run(exp).info.run_id for _ in range(16)]
    plain, batched = runs[:8], runs[8:]
    assert _lost_races(lambda r: mc.set_tag(r, "retrain_mode", "tune"), plain) > 0  # it is real
    assert (
        _lost_races(lambda r: tracking.log_batch(mc, r, tags={"retrain_mode": "tune"}), batched)
        == 0
    )
    assert {mc.get_run(r).data.tags["retrain_mode"] for r in batched} == {"tune"}


def test_parallel_tasks_create_the_study_schema_at_once(
    postgres_url: str, tiny_cfg: Callable[..., Config]
) -> None:
    """The first retrain on a new PostgreSQL: both tuning tasks open the empty storage at
    the same instant, and both create Optuna's tables (the second failed on 'relation
    "studies" already exists', and waited out its task's retry delay)."""
    from pipeline.forecasting import study

    cfg = tiny_cfg(tune__storage=postgres_url)
    assert _at_once(lambda: study.storage(cfg)) == []
    assert study.load_study(cfg, "GOOG", dt.date(2013, 3, 1)).trials == []
