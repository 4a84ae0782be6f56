"""The search space, one fit, and a real (tiny) study through Optuna, Keras and MLflow."""

import datetime as dt
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from pipeline import tracking
from pipeline.config import Config
from pipeline.data.features import Prepared, assign_splits, make_features, prepare
from pipeline.forecasting import sampling, tune
from pipeline.forecasting.model import LSTMParams
from pipeline.forecasting.study import (
    FINISHED,
    StudyFailing,
    best,
    load_study,
    owner,
    owner_is_gone,
    study_name,
    within_budget,
)
from pipeline.forecasting.tune import suggest_params
from pipeline.sections import SearchSpace
from tests.helpers import random_walk_bars

TINY = {
    "tune__space__units": "[4]",
    "tune__space__layers": "[1]",
    "tune__space__window": "[5]",
    "tune__space__batch_size": "[64]",
    "tune__max_epochs": 1,
    "tune__n_trials": 1,
}


def _feats(n: int = 120) -> pd.DataFrame:
    bars = random_walk_bars(n)
    feats = make_features(bars, 5, 5)
    feats["split"] = assign_splits(feats, 0.2, 0.2)
    return feats


def test_search_space_is_a_plain_function_of_the_trial() -> None:
    space = SearchSpace()
    trial = optuna.trial.FixedTrial(
        {
            "units": 64,
            "layers": 2,
            "dropout": 0.2,
            "learning_rate": 1e-3,
            "window": 40,
            "batch_size": 32,
        }
    )
    params = suggest_params(trial, space)
    assert (params.units, params.layers, params.window, params.batch_size) == (64, 2, 40, 32)
    assert (params.dropout, params.learning_rate) == (0.2, 1e-3)


def test_search_space_draws_only_configured_values() -> None:
    space = SearchSpace(units=[4], window=[5], dropout=(0.1, 0.2))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = suggest_params(study.ask(), space)
        assert params.units == 4 and params.window == 5 and 0.1 <= params.dropout <= 0.2
        assert 1e-4 <= params.learning_rate <= 1e-2


def test_study_name_is_ticker_and_day() -> None:
    assert study_name("GOOG", dt.date(2013, 3, 1)) == "GOOG-2013-03-01"


def test_fit_trains_on_train_and_reports_val_nll() -> None:
    prep: Prepared = prepare(_feats(), window=5)
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5, batch_size=64)
    model, history = tune.fit(params, prep, epochs=1, patience=1, callbacks=[], seed=0)
    assert len(history.history["val_nll"]) == 1 and np.isfinite(history.history["val_nll"][0])
    assert np.isfinite(history.history["val_loc_mse"][0])  # the point forecast's loss, beside
    assert model.output_shape == (None, 2)  # location and scale
    assert model.input_shape == (None, 5, prep.inputs.shape[1])


def test_an_epoch_is_the_windows_per_epoch_budget_and_validation_a_fixed_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tuning's cost is set by the budget, not the data: 32 windows an epoch in batches of
    16 is 2 steps whatever the train split holds; validation is the same seeded sample of
    val_windows in every trial, whatever the trial's own seed."""
    import keras

    prep = prepare(_feats(300), window=5)
    params = LSTMParams(units=4, layers=1, dropout=0.0, window=5, batch_size=16)

    class Steps(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.per_epoch: list[int] = []

        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.per_epoch.append(0)

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            self.per_epoch[-1] += 1

    steps = Steps()
    assert prep.count("train") > 32
    tune.fit(params, prep, 2, 5, [steps], seed=0, windows_per_epoch=32)
    assert steps.per_epoch == [2, 2]
    validated: list[np.ndarray] = []

    def sample(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
        validated.append(sampling.fixed_sample(rows, size, seed))
        return validated[-1]

    monkeypatch.setattr(tune, "fixed_sample", sample)
    for seed in (1, 2):  # two trials
        _, history = tune.fit(params, prep, 1, 1, [], seed, val_windows=10, val_seed=7)
        assert np.isfinite(history.history["val_nll"][0])
    assert len(validated[0]) == 10 and np.array_equal(validated[0], validated[1])
    assert set(validated[0]) <= set(prep.rows["val"])


def _tuning(make_cfg, tmp_path: Path, day: dt.date, n_trials: int = 1) -> tuple[Config, str, str]:
    """A tiny config, features on disk and the day's parent run: what tune.run needs."""
    cfg: Config = make_cfg(**{**TINY, "tune__n_trials": n_trials})
    path = tmp_path / "features.parquet"
    _feats().to_parquet(path, index=False)
    return cfg, str(path), tracking.parent_run(cfg, "GOOG", day, f"test-{day}")


def test_run_fills_the_study_once_and_best_reads_it(make_cfg, tmp_path: Path) -> None:
    day = dt.date(2020, 6, 1)
    cfg, path, parent = _tuning(make_cfg, tmp_path, day)

    assert tune.run(cfg, "GOOG", day, path, parent) == 1
    assert tune.run(cfg, "GOOG", day, path, parent) == 0  # a retry resumes: budget met

    loaded = load_study(cfg, "GOOG", day)
    trial = loaded.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    mc = tracking.client(cfg)
    child = mc.get_run(trial.user_attrs["mlflow_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.tags["trial_state"] == "COMPLETE" and child.info.status == "FINISHED"
    assert child.data.params["units"] == "4" and "val_nll" in child.data.metrics

    chosen = best(cfg, "GOOG", day, parent)
    assert chosen["study"] == "GOOG-2020-06-01" and chosen["trials"] == 1
    assert chosen["best_params"]["units"] == 4 and chosen["best_epoch"] == 1
    assert chosen["best_val_loss"] == pytest.approx(trial.value)
    run = mc.get_run(parent)
    assert run.data.tags["optuna_study"] == "GOOG-2020-06-01"
    artifacts = {a.path for a in mc.list_artifacts(parent, "plots")}
    assert "plots/optuna_history.png" in artifacts


def test_a_dead_workers_trial_is_failed_closed_and_retried(make_cfg, tmp_path: Path) -> None:
    """A worker killed mid-trial leaves a RUNNING trial; the next worker fails it by heartbeat."""
    day = dt.date(2020, 6, 2)
    cfg, path, parent = _tuning(make_cfg, tmp_path, day, n_trials=2)
    dead, run_id = _dead_trial(cfg, load_study(cfg, "GOOG", day), parent)

    tune.run(cfg, "GOOG", day, path, parent)

    trials = load_study(cfg, "GOOG", day).trials
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 2  # the budget counts finished trials, the dead one is not one
    retried = [
        optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials
    ]
    assert dead.number in retried  # queued again with the same parameters
    lost = tracking.client(cfg).get_run(run_id)
    assert lost.info.status == "FAILED" and lost.data.tags["trial_state"] == "STALE"


def test_within_budget_counts_trials_started_before() -> None:
    study = optuna.create_study()
    first, second, third = study.ask(), study.ask(), study.ask()  # three workers at once
    assert within_budget(study, first.number, 2)
    assert within_budget(study, second.number, 2)
    assert not within_budget(study, third.number, 2)  # two ahead of it hold the budget
    study.tell(first, state=optuna.trial.TrialState.FAIL)  # a failed one frees its place
    assert within_budget(study, third.number, 2)


def _dead_trial(cfg: Config, study: optuna.Study, parent: str) -> tuple[optuna.Trial, str]:
    """What a killed worker leaves: a RUNNING trial and its RUNNING MLflow run, then silence."""
    import sqlalchemy

    dead = study.ask()
    run_id = tracking.child_run(cfg, parent, f"trial-{dead.number}", {"kind": "trial"})
    dead.set_user_attr("mlflow_run_id", run_id)
    study._storage.record_heartbeat(dead._trial_id)  # type: ignore[attr-defined]
    with sqlalchemy.create_engine(cfg.optuna_storage).begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = '2000-01-01' WHERE trial_id = :t"
            ),
            {"t": dead._trial_id},
        )
    return dead, run_id


def test_a_trial_beyond_the_budget_is_not_run(make_cfg, tmp_path: Path) -> None:
    """Two other workers hold the whole budget with running trials: this worker runs none."""
    day = dt.date(2020, 6, 3)
    cfg, path, parent = _tuning(make_cfg, tmp_path, day, n_trials=2)
    study = load_study(cfg, "GOOG", day)
    others = [study.ask(), study.ask()]  # alive: no heartbeat has gone stale

    assert tune.run(cfg, "GOOG", day, path, parent) == 1

    trials = load_study(cfg, "GOOG", day).trials
    surplus = trials[-1]
    assert surplus.number == 2 and surplus.state == optuna.trial.TrialState.FAIL
    assert "surplus" in surplus.user_attrs and "mlflow_run_id" not in surplus.user_attrs
    assert [t.state for t in trials[:2]] == [optuna.trial.TrialState.RUNNING] * 2
    assert [t.number for t in others] == [0, 1]


def test_a_retry_with_the_budget_met_still_closes_a_dead_trial(make_cfg, tmp_path: Path) -> None:
    """The surviving worker finished the budget; the killed task's retry must still fail the
    trial its worker left RUNNING, and close that trial's MLflow run."""
    day = dt.date(2020, 6, 4)
    cfg, path, parent = _tuning(make_cfg, tmp_path, day)
    study = load_study(cfg, "GOOG", day)
    dead, run_id = _dead_trial(cfg, study, parent)
    study.tell(study.ask(), 0.5)  # the survivor's trial: budget of 1 met

    assert tune.run(cfg, "GOOG", day, path, parent) == 0  # no trial run...

    assert load_study(cfg, "GOOG", day).trials[dead.number].state.name == "FAIL"  # ...but
    lost = tracking.client(cfg).get_run(run_id)
    assert lost.info.status == "FAILED" and lost.data.tags["trial_state"] == "STALE"


def _killed_owner() -> dict[str, object]:
    """The owner record of a real process on this host, then SIGKILLed."""
    import subprocess
    import sys

    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    who = {"host": owner()["host"], "pid": proc.pid}
    who["started"] = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait()
    return who


def test_owner_is_gone_only_for_a_dead_process_on_this_host() -> None:
    assert not owner_is_gone(owner())  # this process
    assert not owner_is_gone({**owner(), "host": "another-host"})  # heartbeat's job
    assert not owner_is_gone(None)
    assert owner_is_gone(_killed_owner())
    assert owner_is_gone({**owner(), "started": 1.0})  # our pid, reused


def test_a_killed_run_resumes_with_nothing_left_running(make_cfg, tmp_path: Path) -> None:
    """kill -9 of `make run` mid-tuning, then `make run` again: the killed process's trial
    still has a fresh heartbeat, its parent run stays RUNNING; the new run must clean both
    up and take the finished trial under its own parent."""
    day = dt.date(2020, 6, 5)
    cfg, path, old_parent = _tuning(make_cfg, tmp_path, day, n_trials=2)
    study = load_study(cfg, "GOOG", day)
    mc = tracking.client(cfg)
    done = study.ask()  # finished before the kill, logged under the old parent
    done_run = tracking.child_run(cfg, old_parent, "trial-0", {"kind": "trial"})
    done.set_user_attr("mlflow_run_id", done_run)
    mc.set_terminated(done_run)
    study.tell(done, 0.5)
    killed = study.ask()  # running when the process died: heartbeat still fresh
    killed_run = tracking.child_run(cfg, old_parent, "trial-1", {"kind": "trial"})
    killed.set_user_attr("mlflow_run_id", killed_run)
    killed.set_user_attr("owner", _killed_owner())
    study._storage.record_heartbeat(killed._trial_id)  # type: ignore[attr-defined]

    new_parent = tracking.parent_run(cfg, "GOOG", day, f"test-{day}-again")
    assert tune.run(cfg, "GOOG", day, path, new_parent) == 1  # the one missing trial

    trials = load_study(cfg, "GOOG", day).trials
    assert trials[killed.number].state == optuna.trial.TrialState.FAIL
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len([t for t in trials if t.state in FINISHED]) == 2
    lost = mc.get_run(killed_run)
    assert lost.info.status == "FAILED" and lost.data.tags["trial_state"] == "STALE"
    adopted = mc.get_run(done_run).data.tags
    assert adopted["mlflow.parentRunId"] == new_parent and adopted["adopted_from"] == old_parent
    orphan = mc.get_run(old_parent)
    assert orphan.info.status == "FAILED" and orphan.data.tags["superseded_by"] == new_parent
    exp = mc.get_experiment_by_name(cfg.tracking.experiment)
    running = mc.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert [r.info.run_id for r in running] == [new_parent]  # only the live run's parent


def test_an_error_that_would_fail_every_trial_stops_the_study_at_once(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = dt.date(2020, 6, 6)
    cfg, path, parent = _tuning(make_cfg, tmp_path, day, n_trials=5)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the model cannot be built")

    monkeypatch.setattr(tune, "build_model", broken)
    with pytest.raises(RuntimeError, match="cannot be built"):
        tune.run(cfg, "GOOG", day, path, parent)
    [trial] = load_study(cfg, "GOOG", day).trials  # one, not five or five hundred
    assert trial.state == optuna.trial.TrialState.FAIL
    assert tracking.client(cfg).get_run(trial.user_attrs["mlflow_run_id"]).info.status == "FAILED"


def test_trials_failing_for_their_parameters_stop_after_a_few_in_a_row(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    day = dt.date(2020, 6, 7)
    cfg, path, parent = _tuning(make_cfg, tmp_path, day, n_trials=10)
    diverged = SimpleNamespace(history={tune.MONITOR: [float("nan")]})
    monkeypatch.setattr(tune, "fit", lambda *args, **kwargs: (None, diverged))
    with pytest.raises(StudyFailing, match=r"3 trials failed in a row.*not finite"):
        tune.run(cfg, "GOOG", day, path, parent)
    trials = load_study(cfg, "GOOG", day).trials
    assert [t.state.name for t in trials] == ["FAIL"] * cfg.tune.max_failed_in_a_row
    mc = tracking.client(cfg)
    assert {mc.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in trials} == {"FAILED"}


def test_too_little_history_for_any_window_is_said_before_any_trial(
    make_cfg, tmp_path: Path
) -> None:
    cfg: Config = make_cfg(**{**TINY, "tune__space__window": "[200]"})
    with pytest.raises(ValueError, match=r"smallest window \(200"):
        tune.check_smallest_window(_feats(), cfg.tune.space)
