"""Debris of runs that died: closed by the next run, or by `python -m pipeline doctor`.

A run killed outright (SIGKILL, a power cut, a closed laptop) leaves its Airflow DAG run
`running` (under `make ui`, with `max_active_runs=1`, one holds back every later run of
its DAG) and its MLflow runs RUNNING for good. Whoever holds the run lock on every store
(pipeline/operations/runlock.py) has proof that no run is alive on them: so `make run`,
the replay, `make ui` and `doctor` close them first, FAILED, saying what they closed.
The audit trail's pending moves are left to audit.settle (pending there means something).
"""

from __future__ import annotations

import contextlib
from typing import Any

from pipeline.config import Config
from pipeline.schedule import DAGS


def close_orphans(cfg: Config) -> list[str]:
    """Close what dead runs left open; one line per thing closed. Call with the run lock."""
    return [*_airflow_runs(), *_mlflow_runs(cfg)]


def _airflow_runs() -> list[str]:
    """DAG runs of this project's DAGs left running or queued, failed with their tasks."""
    import os

    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return []  # a deployment's database: its scheduler tends its runs
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    closed = []
    open_states = (DagRunState.RUNNING, DagRunState.QUEUED)
    unfinished = (
        TaskInstanceState.RUNNING,
        TaskInstanceState.QUEUED,
        TaskInstanceState.SCHEDULED,
        TaskInstanceState.UP_FOR_RETRY,
        None,
    )
    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id.in_(DAGS), DagRun.state.in_(open_states))
        for run in runs.all():
            for ti in session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id):
                if ti.state in unfinished:
                    ti.state = TaskInstanceState.FAILED
            run.state = DagRunState.FAILED
            closed.append(f"Airflow: {run.dag_id} run {run.run_id} (was {_name(run)}) -> failed")
    return closed


def _name(run: Any) -> str:
    return str(getattr(run.state, "value", run.state))


def _mlflow_runs(cfg: Config) -> list[str]:
    """MLflow runs left RUNNING in the pipeline's experiments (not the audit trail's)."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    mc = tracking.client(cfg)
    audit = f"{cfg.tracking.experiment}_audit"
    closed = []
    with contextlib.suppress(MlflowException):
        ids = [
            e.experiment_id
            for e in mc.search_experiments(view_type=ViewType.ACTIVE_ONLY)
            if e.name.startswith(cfg.tracking.experiment) and e.name != audit
        ]
        for run in mc.search_runs(ids, "attributes.status = 'RUNNING'", max_results=1000):
            mc.set_tag(run.info.run_id, "closed_by", "the next run: its own had died")
            mc.set_terminated(run.info.run_id, "FAILED")
            closed.append(f"MLflow: run {run.info.run_name or run.info.run_id} -> FAILED")
    return closed
