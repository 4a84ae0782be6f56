"""The Optuna study's bookkeeping: its storage, who runs each trial, the shared budget,
and picking a study up where a dead worker left it.

The study lives in RDB storage (SQLite by default, any SQLAlchemy URL works) and
is keyed to ticker and run date, loaded with load_if_exists: a retried task
resumes with the trials it already has instead of starting over. The search itself
(objective, trials, the best one) is pipeline/forecasting/tune.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
import warnings
from typing import Any

import optuna
import psutil

from pipeline import tracking
from pipeline.carry import Selected
from pipeline.config import Config
from pipeline.layout import ensure_sqlite_dir

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def study_name(ticker: str, day: dt.date) -> str:
    return f"{ticker}-{day.isoformat()}"


def storage(cfg: Config) -> optuna.storages.RDBStorage:
    """The study storage, with heartbeats so a dead worker's trial does not stay RUNNING.

    Parallel tuning tasks on an empty database both create Optuna's tables, and the second
    fails on a name the first just took: it opens again once the first has finished
    (a few tries, a second apart; a lasting error is raised as it is)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for _ in range(4):
        try:
            return _open_storage(cfg)
        except (IntegrityError, ProgrammingError):
            time.sleep(1)  # let the other creator's transaction finish
    return _open_storage(cfg)


def _open_storage(cfg: Config) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # heartbeats are marked experimental since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            ensure_sqlite_dir(cfg.optuna_storage),
            heartbeat_interval=cfg.tune.heartbeat_interval_s,
            grace_period=cfg.tune.grace_period_s,
            heartbeat_stale_trial_callback=on_stale_trial(cfg),
        )


def load_study(cfg: Config, ticker: str, day: dt.date) -> optuna.Study:
    return optuna.create_study(
        study_name=study_name(ticker, day),
        storage=storage(cfg),
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.tune.seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        load_if_exists=True,
    )


class SurplusTrial(RuntimeError):
    """Parallel workers started more trials than the budget has left; this one is not run."""


class StudyFailing(RuntimeError):
    """`tune.max_failed_in_a_row` trials failed in a row: something fails every trial."""


def within_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Workers sharing a study can start trials at the same moment: trial `number` is within
    the budget only if fewer than `n_trials` trials before it are finished or still running."""
    claimed = study.get_trials(deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING))
    return sum(t.number < number for t in claimed) < n_trials


def stop_after_failures(limit: int) -> Any:
    """An optimize() callback: raise StudyFailing after `limit` consecutive failed trials
    of this worker (surplus trials are not failures)."""
    failed: list[str] = []

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != optuna.trial.TrialState.FAIL:
            failed.clear()
        elif "surplus" not in trial.user_attrs:
            failed.append(str(trial.user_attrs.get("fail_reason", "no reason recorded")))
            if len(failed) >= limit:
                raise StudyFailing(
                    f"study {study.study_name}: {limit} trials failed in a row "
                    f"(tune.max_failed_in_a_row); last: {failed[-1]}"
                )

    return callback


def owner() -> dict[str, Any]:
    """This process, as a trial records it: a later process can tell whether it still runs."""
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}


def owner_is_gone(who: Any) -> bool:
    """True if `who` (an owner() record) was a process on this host that no longer runs.
    A trial owned by another host is left to the heartbeat (tune.grace_period_s)."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return False
    try:
        return bool(psutil.Process(int(who["pid"])).create_time() != who["started"])
    except psutil.NoSuchProcess:
        return True
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False


def on_stale_trial(cfg: Config) -> Any:
    """A trial whose worker died (no heartbeat for `tune.grace_period_s`): Optuna has marked it
    FAIL; close its MLflow child run as FAILED too, and queue it again (`tune.stale_retries`)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # marked experimental since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.tune.stale_retries)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            mc = tracking.client(cfg)
            tracking.log_batch(mc, run_id, tags={"trial_state": "STALE"})  # may race
            mc.set_terminated(run_id, "FAILED")
        log.warning("trial %d lost its worker: failed, queued again", trial.number)
        retry(study, trial)

    return callback


def resume(cfg: Config, study: optuna.Study, parent_id: str) -> None:
    """Pick a study up where a dead worker left it: its RUNNING trial is failed (and queued
    again), its MLflow run closed, and the finished trials' runs move under `parent_id`."""
    with warnings.catch_warnings():  # heartbeats: another host's worker that went silent
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    fail_dead_local_trials(cfg, study)
    adopt_finished_trials(cfg, study, parent_id)


def fail_dead_local_trials(cfg: Config, study: optuna.Study) -> list[int]:
    """RUNNING trials whose process on this host is gone (kill -9, a crashed `make run`):
    their heartbeat may still look fresh, but they will never finish."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    dead = [t for t in running if owner_is_gone(t.user_attrs.get("owner"))]
    callback = on_stale_trial(cfg)
    for trial in dead:
        # FrozenTrial keeps its storage id private; set_trial_state_values is public storage API
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        callback(study, study._storage.get_trial(trial._trial_id))
    return [t.number for t in dead]


def adopt_finished_trials(cfg: Config, study: optuna.Study, parent_id: str) -> list[str]:
    """A resumed study's earlier trials count for this run: their MLflow runs move under
    this run's parent (tag `adopted_from`) unless their parent run finished (a complete
    earlier run keeps its record). A parent left RUNNING with no live trial was orphaned by
    a dead process: it is closed FAILED (tag `superseded_by`)."""
    from mlflow.exceptions import MlflowException

    mc = tracking.client(cfg)
    live = {
        t.user_attrs.get("mlflow_run_id")
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    }
    orphans: dict[str, bool] = {}  # old parent -> still has a live trial
    moved = []
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            continue
        try:
            old = mc.get_run(run_id).data.tags.get("mlflow.parentRunId")
        except MlflowException:  # deleted by hand: nothing to move
            continue
        if not old or old == parent_id or _status(mc, old) == "FINISHED":
            continue
        orphans[old] = orphans.get(old, False) or run_id in live
        if run_id not in live:
            tracking.log_batch(
                mc, run_id, tags={"mlflow.parentRunId": parent_id, "adopted_from": old}
            )
            moved.append(run_id)
    for old, busy in orphans.items():
        if not busy and _status(mc, old) == "RUNNING":
            tracking.log_batch(mc, old, tags={"superseded_by": parent_id})  # may race
            mc.set_terminated(old, "FAILED")
            log.warning(
                "closed orphaned MLflow run %s: its trials now belong to %s", old, parent_id
            )
    return moved


def _status(mc: Any, run_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mc.get_run(run_id).info.status)
    except MlflowException:
        return None


def started_trials(study: optuna.Study) -> set[int]:
    """Numbers of the trials that have begun (a queued retry has not)."""
    waiting = optuna.trial.TrialState.WAITING
    return {t.number for t in study.get_trials(deepcopy=False) if t.state != waiting}


def log_study_plots(cfg: Config, study: optuna.Study, parent_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    mc = tracking.client(cfg)
    plots: dict[str, Any] = {"optuna_history.png": ovm.plot_optimization_history}
    if len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) >= 2:
        plots["optuna_param_importances.png"] = ovm.plot_param_importances
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # the matplotlib backend is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
            mc.log_figure(parent_id, ax.figure, f"plots/{name}")
            plt.close(ax.figure)  # pyplot keeps every figure until closed
        except (ValueError, RuntimeError) as exc:  # e.g. importances when all params equal
            log.warning("skipped %s: %s", name, exc)


def best(cfg: Config, ticker: str, day: dt.date, parent_id: str) -> Selected:
    """The study's best trial, logged to the pipeline run with its plots."""
    study = load_study(cfg, ticker, day)
    trial = study.best_trial
    mc = tracking.client(cfg)
    mc.set_tag(parent_id, "optuna_study", study.study_name)
    mc.log_metric(parent_id, "best_val_nll", float(trial.value or 0.0))
    if "val_loc_mse" in trial.user_attrs:
        mc.log_metric(parent_id, "best_val_loc_mse", float(trial.user_attrs["val_loc_mse"]))
    log_study_plots(cfg, study, parent_id)
    return {
        "study": study.study_name,
        "best_params": trial.params,
        "best_epoch": int(trial.user_attrs.get("best_epoch", cfg.tune.max_epochs)),
        "best_val_loss": float(trial.value or 0.0),
        "trials": len(study.trials),
    }
