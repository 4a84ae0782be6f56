"""Tune: an Optuna TPE search over the LSTM, pruned through Keras, every trial an MLflow child run.

The study lives in RDB storage (SQLite by default, any SQLAlchemy URL works) and
is keyed to ticker and run date, loaded with load_if_exists: a retried task
resumes with the trials it already has instead of starting over.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import socket
import sys
import time
import warnings
from typing import Any

import keras
import optuna
import pandas as pd
import psutil

from pipeline.config import Config, SearchSpace
from pipeline.data.features import FEATURES, Prepared, prepare
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.layout import ensure_sqlite_dir
from pipeline.lifecycle import tracking
from pipeline.orchestration.carry import Selected

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
MONITOR = "val_nll"  # validation NLL of the forecast distribution: minimised, pruned on


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> LSTMParams:
    """The search space as one plain function of the trial."""
    return LSTMParams(
        units=trial.suggest_categorical("units", space.units),
        layers=trial.suggest_categorical("layers", space.layers),
        dropout=trial.suggest_float("dropout", *space.dropout),
        learning_rate=trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        window=trial.suggest_categorical("window", space.window),
        batch_size=trial.suggest_categorical("batch_size", space.batch_size),
    )


class EpochLogger(keras.callbacks.Callback):
    """Per-epoch losses into an MLflow run, so the UI shows learning curves per trial."""

    def __init__(self, mc: Any, run_id: str):
        super().__init__()
        self.mc, self.run_id = mc, run_id

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in (logs or {}).items()]
        self.mc.log_batch(self.run_id, metrics=metrics)


def fit(
    params: LSTMParams, prep: Prepared, epochs: int, patience: int, callbacks: list[Any], seed: int
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train on the train split, early-stopped on validation loss (best weights kept)."""
    keras.utils.set_random_seed(seed)
    model = build_model(params, len(FEATURES))
    stop = keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="min", patience=patience, restore_best_weights=True
    )
    history = model.fit(
        prep.x["train"],
        prep.y["train"],
        validation_data=(prep.x["val"], prep.y["val"]),
        epochs=epochs,
        batch_size=params.batch_size,
        callbacks=[stop, *callbacks],
        verbose=0,
        shuffle=True,
    )
    return model, history


def study_name(ticker: str, day: dt.date) -> str:
    return f"{ticker}-{day.isoformat()}"


class SurplusTrial(RuntimeError):
    """Parallel workers started more trials than the budget has left; this one is not run."""


class TrialUnfit(ValueError):
    """This trial's parameters cannot work here (diverged, window too long for the data);
    other parameters may. Any other error stops the study at once: it would fail them all."""


class StudyFailing(RuntimeError):
    """`tune.max_failed_in_a_row` trials failed in a row: something fails every trial."""


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


def within_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Workers sharing a study can start trials at the same moment: trial `number` is within
    the budget only if fewer than `n_trials` trials before it are finished or still running."""
    claimed = study.get_trials(deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING))
    return sum(t.number < number for t in claimed) < n_trials


def make_objective(cfg: Config, feats: pd.DataFrame, parent_id: str) -> Any:
    from optuna_integration import KerasPruningCallback

    cache: dict[int, Prepared] = {}
    mc = tracking.client(cfg)

    def objective(trial: optuna.Trial) -> float:
        if not within_budget(trial.study, trial.number, cfg.tune.n_trials):
            trial.study.stop()  # ends as FAIL, before any training or MLflow run
            trial.set_user_attr("surplus", "the budget was taken by other workers")
            raise SurplusTrial(f"trial {trial.number}: budget of {cfg.tune.n_trials} taken")
        trial.set_user_attr("owner", owner())
        params = suggest_params(trial, cfg.tune.space)
        prep = cache.setdefault(params.window, prepare(feats, params.window, cfg.model.base))
        if not has_samples(prep):
            return unfit(trial, f"window {params.window} leaves no train or validation sample")
        run_id = tracking.child_run(
            cfg,
            parent_id,
            f"trial-{trial.number}",
            {"kind": "trial", "trial_number": str(trial.number)},
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        tracking.log_batch(mc, run_id, params=params.as_dict())
        state, status = "FAIL", "FAILED"
        try:
            _, history = fit(
                params,
                prep,
                cfg.tune.max_epochs,
                cfg.tune.patience,
                [EpochLogger(mc, run_id), KerasPruningCallback(trial, MONITOR)],
                cfg.tune.seed + trial.number,
            )
            losses = history.history[MONITOR]
            best = min(losses)
            if not math.isfinite(best):
                return unfit(trial, "validation loss is not finite (training diverged)")
            epoch = losses.index(best)
            trial.set_user_attr("best_epoch", epoch + 1)
            mc.log_metric(run_id, "best_val_nll", best)  # what the study minimises
            loc_mse = history.history.get("val_loc_mse")
            if loc_mse:  # the location's own error at that epoch, for the point forecast
                trial.set_user_attr("val_loc_mse", float(loc_mse[epoch]))
                mc.log_metric(run_id, "best_val_loc_mse", float(loc_mse[epoch]))
            state, status = "COMPLETE", "FINISHED"
            return best
        except optuna.TrialPruned:
            state, status = "PRUNED", "KILLED"
            raise
        finally:
            mc.set_tag(run_id, "trial_state", state)
            mc.set_terminated(run_id, status)

    return objective


def has_samples(prep: Prepared) -> bool:
    """Whether a window length leaves at least one train and one validation sample."""
    return bool(len(prep.y["train"]) and len(prep.y["val"]))


def unfit(trial: optuna.Trial, reason: str) -> float:
    """Fail this trial for its own parameters; the study goes on (see TrialUnfit)."""
    trial.set_user_attr("fail_reason", reason)
    raise TrialUnfit(f"trial {trial.number}: {reason}")


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
            mc.set_tag(run_id, "trial_state", "STALE")
            mc.set_terminated(run_id, "FAILED")
        log.warning("trial %d lost its worker: failed, queued again", trial.number)
        retry(study, trial)

    return callback


def storage(cfg: Config) -> optuna.storages.RDBStorage:
    """The study storage, with heartbeats so a dead worker's trial does not stay RUNNING."""
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


def _log_study_plots(cfg: Config, study: optuna.Study, parent_id: str) -> None:
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


def run(cfg: Config, ticker: str, day: dt.date, features_path: str, parent_id: str) -> int:
    """One worker: run trials until the study holds `tune.n_trials` finished ones (or the timeout).

    Several workers may call this at once on a shared storage: the budget is the
    study's total, so together they run n_trials, and a retried task resumes.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    feats = pd.read_parquet(features_path)
    check_smallest_window(feats, cfg.tune.space)
    study = load_study(cfg, ticker, day)
    resume(cfg, study, parent_id)
    started = _started(study)
    done = len([t for t in study.trials if t.state in FINISHED])
    log.info("study %s: %d of %d trial(s) done", study.study_name, done, cfg.tune.n_trials)
    if done < cfg.tune.n_trials:
        study.optimize(
            make_objective(cfg, feats, parent_id),
            timeout=cfg.tune.timeout_s,
            callbacks=[
                optuna.study.MaxTrialsCallback(cfg.tune.n_trials, states=FINISHED),
                stop_after_failures(cfg.tune.max_failed_in_a_row),
            ],
            gc_after_trial=True,
            show_progress_bar=sys.stderr.isatty(),
            catch=(SurplusTrial, TrialUnfit),  # anything else fails every trial: stop now
        )
    return len(_started(study) - started)


def check_smallest_window(feats: pd.DataFrame, space: SearchSpace) -> None:
    """If even the smallest window leaves no sample, no trial can run: say so before any."""
    window = min(space.window)
    prep = prepare(feats, window, "trailing")  # samples only: no base to fit
    if not has_samples(prep):
        rows = dict(feats["split"].value_counts())
        raise ValueError(
            f"features {rows} leave no train or validation sample even for the smallest "
            f"window ({window}, tune.space.window): more history is needed"
        )


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
            mc.set_tag(old, "superseded_by", parent_id)
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


def _started(study: optuna.Study) -> set[int]:
    """Numbers of the trials that have begun (a queued retry has not)."""
    waiting = optuna.trial.TrialState.WAITING
    return {t.number for t in study.get_trials(deepcopy=False) if t.state != waiting}


def best(cfg: Config, ticker: str, day: dt.date, parent_id: str) -> Selected:
    """The study's best trial, logged to the pipeline run with its plots."""
    study = load_study(cfg, ticker, day)
    trial = study.best_trial
    mc = tracking.client(cfg)
    mc.set_tag(parent_id, "optuna_study", study.study_name)
    mc.log_metric(parent_id, "best_val_nll", float(trial.value or 0.0))
    if "val_loc_mse" in trial.user_attrs:
        mc.log_metric(parent_id, "best_val_loc_mse", float(trial.user_attrs["val_loc_mse"]))
    _log_study_plots(cfg, study, parent_id)
    return {
        "study": study.study_name,
        "best_params": trial.params,
        "best_epoch": int(trial.user_attrs.get("best_epoch", cfg.tune.max_epochs)),
        "best_val_loss": float(trial.value or 0.0),
        "trials": len(study.trials),
    }
