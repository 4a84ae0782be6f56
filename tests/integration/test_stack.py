"""The scale-out for real: `make stack` on this machine's PostgreSQL and Redis.

Airflow on CeleryExecutor with two workers, the MLflow server with basic auth and
Optuna on PostgreSQL, in throw-away databases and a temporary directory; a tiny
budget with `tune.workers: 2`. Runs go through the scheduler (`airflow dags
trigger`), not `dag.test`. Everything is torn down, even when a test fails.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import psutil
import pytest
import requests
from mlflow import MlflowClient

from pipeline import schedule
from pipeline.config import Config
from pipeline.deployment import deploy, processes, stack, stack_runs

pytestmark = pytest.mark.slow

N_TRIALS = 5
BUDGET = {
    "PIPELINE__TICKERS": "[GOOG]",
    "PIPELINE__MODEL__SCOPE": "ticker",
    "PIPELINE__TUNE__N_TRIALS": str(N_TRIALS),
    "PIPELINE__TUNE__MAX_EPOCHS": "2",
    "PIPELINE__TUNE__SPACE__UNITS": "[8]",
    "PIPELINE__TUNE__SPACE__LAYERS": "[1]",
    "PIPELINE__TUNE__SPACE__WINDOW": "[10]",
    "PIPELINE__TUNE__SPACE__BATCH_SIZE": "[128]",
    # a dead worker is noticed in seconds, not minutes
    "PIPELINE__TUNE__HEARTBEAT_INTERVAL_S": "2",
    "PIPELINE__TUNE__GRACE_PERIOD_S": "6",
    "PIPELINE__STACK__TASK_HEARTBEAT_TIMEOUT_S": "20",
    "PIPELINE__STACK__TASK_RETRY_DELAY_S": "2",
}
RUN_TIMEOUT_S = 900  # a hang guard: the other test worker shares the cores


@dataclass(eq=False)
class Stack:
    cfg: Config
    env: dict[str, str]  # the environment `make stack` was started with
    keys: dict[str, str]

    @property
    def root(self) -> Path:
        return deploy.stack_dir(self.cfg)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "stack", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def tune(self, run_id: str, state: str | None = None) -> list[stack_runs.TaskRun]:
        runs = stack_runs.task_runs(self.cfg, run_id)
        return [t for t in runs if t.task_id == "tune" and state in (None, t.state)]

    @functools.cached_property
    def storage(self) -> optuna.storages.RDBStorage:
        """One storage (one connection pool) for all of this module's polling."""
        return optuna.storages.RDBStorage(
            deploy.pipeline_env(self.cfg, self.keys)["OPTUNA_STORAGE"]
        )

    def frozen_trials(self, study: str) -> list[optuna.trial.FrozenTrial]:
        """Every trial, read through Optuna from the stack's storage."""
        try:
            return optuna.load_study(study_name=study, storage=self.storage).get_trials(
                deepcopy=False
            )
        except KeyError:  # no tuning task has created it yet
            return []

    def trials(self, study: str) -> list[tuple[int, str]]:
        """(number, state); a trial that parallel workers started beyond the budget (failed
        before it ran) shows as SURPLUS."""
        return [
            (t.number, "SURPLUS" if "surplus" in t.user_attrs else t.state.name)
            for t in self.frozen_trials(study)
        ]

    def mlflow(self) -> MlflowClient:
        """The pipeline's own account, as the tasks use it."""
        os.environ["MLFLOW_TRACKING_USERNAME"] = deploy.PIPELINE_USER
        os.environ["MLFLOW_TRACKING_PASSWORD"] = self.keys["MLFLOW_PIPELINE_PASSWORD"]
        return MlflowClient(self.mlflow_url, registry_uri=self.mlflow_url)  # not a global one

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.cfg.stack.host}:{self.cfg.stack.mlflow_port}"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_runs.throwaway_stack(tmp_path_factory.mktemp("stack"), BUDGET) as (cfg, env):
        try:
            yield Stack(cfg, env, deploy.load_secrets(deploy.stack_dir(cfg) / "secrets.env"))
        finally:
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(key, None)  # set by Stack.mlflow for this module's clients


def test_mlflow_refuses_anonymous_and_read_only_writes(up: Stack) -> None:
    api = up.mlflow_url + "/api/2.0/mlflow"
    assert (
        requests.get(f"{api}/experiments/search", params={"max_results": 1}, timeout=10).status_code
        == 401
    )
    viewer = (deploy.VIEWER_USER, up.keys["MLFLOW_VIEWER_PASSWORD"])
    assert (
        requests.get(f"{api}/registered-models/search", auth=viewer, timeout=10).status_code == 200
    )
    moved = requests.post(
        f"{api}/registered-models/alias",
        json={"name": "price_lstm_GOOG", "alias": "production", "version": "1"},
        auth=viewer,
        timeout=10,
    )
    assert moved.status_code == 403, moved.text
    wrong = requests.get(
        f"{api}/experiments/search", auth=(deploy.PIPELINE_USER, "wrong"), timeout=10
    )
    assert wrong.status_code == 401


def test_servers_listen_on_localhost_only(up: Stack) -> None:
    for name in ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer", "worker1"):
        pid = processes.running_pid(up.root, name)
        assert pid is not None, name
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                for c in proc.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        assert c.laddr.ip == "127.0.0.1", (name, c.laddr)


def test_parallel_tuning_survives_a_worker_killed_mid_trial(up: Stack) -> None:
    """The retrain DAG: both workers tune the day's one study at the same time; one is
    killed mid-trial as a lost machine would be; the run still succeeds, with the budget
    spent exactly once. Then the daily DAG runs on the same workers."""
    run_id, study = "stack_test_parallel", "GOOG-2013-03-01"
    stack_runs.trigger(up.cfg, "2013-03-01T22:30:00+00:00", run_id)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:  # both workers training (MLflow runs open), one trial done: kill one worker
        trials = up.frozen_trials(study)
        training = [
            t for t in trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
        ]
        if len(training) == 2 and any(t.state.name == "COMPLETE" for t in trials):
            running = up.tune(run_id, "running")
            if len(running) == 2:
                break
        assert stack_runs.run_state(up.cfg, run_id) != "failed", stack_runs.task_runs(
            up.cfg, run_id
        )
        assert time.monotonic() < deadline, stack_runs.task_runs(up.cfg, run_id)
        time.sleep(0.3)
    # in parallel: two tuning tasks running at once, one on each worker, both training
    assert {t.hostname[:7] for t in running} == {"worker1", "worker2"}, running
    victim = running[0].hostname.split("@")[0]
    pid = processes.running_pid(up.root, victim)
    assert pid is not None
    for proc in processes.process_tree(pid):  # the worker and its running task, as a lost machine
        proc.kill()

    assert stack_runs.wait(up.cfg, run_id, RUN_TIMEOUT_S) == "success", stack_runs.task_runs(
        up.cfg, run_id
    )
    retried = [t for t in up.tune(run_id) if t.try_number > 1]
    assert len(retried) == 1 and not retried[0].hostname.startswith(victim), retried

    trials_ = up.trials(study)
    numbers = [n for n, s in trials_ if s in ("COMPLETE", "PRUNED")]
    assert len(numbers) == len(set(numbers)) == N_TRIALS  # the budget, shared, no re-runs
    states = {s for _, s in trials_}
    assert "FAIL" in states  # the killed worker's trial, failed by Optuna's heartbeat
    assert states <= {"COMPLETE", "PRUNED", "SURPLUS", "FAIL"}, trials_

    mc = up.mlflow()
    exp = mc.get_experiment_by_name(up.cfg.tracking.experiment)
    running_runs = mc.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert running_runs == [], [
        (r.info.run_name, r.data.tags.get("trial_state")) for r in running_runs
    ]
    stale = mc.search_runs([exp.experiment_id], "tags.trial_state = 'STALE'")
    assert len(stale) == 1 and stale[0].info.status == "FAILED"
    parent = mc.search_runs([exp.experiment_id], f"tags.pipeline_run_id = '{run_id}'")
    assert len(parent) == 1
    children = mc.search_runs(
        [exp.experiment_id],
        f"tags.mlflow.parentRunId = '{parent[0].info.run_id}' and tags.kind = 'trial'",
    )
    finished = [r for r in children if r.data.tags.get("trial_state") != "STALE"]
    assert sorted(int(r.data.tags["trial_number"]) for r in finished) == sorted(numbers)
    lstm = mc.get_model_version("price_lstm_GOOG", "1")  # the LSTM this retrain trained
    assert lstm.tags["forecaster"] == "lstm" and lstm.tags["run_id"] == parent[0].info.run_id
    # refused or not, production serves from now on (a fallback when the gate refused it)
    assert mc.get_model_version_by_alias("price_lstm_GOOG", "production") is not None

    # the daily DAG on the same stack: each ticker's chain on the Celery workers, the report
    daily_id = "stack_test_daily"
    stack_runs.trigger(up.cfg, "2013-03-01T22:30:00+00:00", daily_id, schedule.DAILY)
    assert stack_runs.wait(up.cfg, daily_id, RUN_TIMEOUT_S) == "success", stack_runs.task_runs(
        up.cfg, daily_id
    )
    ran = {t.task_id: t for t in stack_runs.task_runs(up.cfg, daily_id)}
    assert {"chunk.forecast", "report"} <= set(ran)
    assert ran["chunk.forecast"].hostname.startswith("worker"), ran

    # `up` again starts only what is missing: the killed worker
    again = up.cli("up")
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"{victim:14s} started" in again.stdout
    assert "scheduler      already running" in again.stdout


def test_down_stops_every_process(up: Stack) -> None:
    names = stack._names(up.cfg, up.root)
    family = [
        proc
        for n in names
        if (pid := processes.running_pid(up.root, n))
        for proc in processes.process_tree(pid)
    ]
    assert len(family) > len(names)  # workers, servers and their children
    out = up.cli("down", timeout=120)
    assert out.returncode == 0, out.stderr
    _, alive = psutil.wait_procs(family, timeout=5)
    assert alive == [], alive
    assert up.cli("status").returncode == 1
