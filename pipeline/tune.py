"""Tune: an Optuna TPE search over the LSTM, pruned through Keras, every trial an MLflow child run.

The study lives in RDB storage (SQLite by default, any SQLAlchemy URL works) and
is keyed to ticker and run date, loaded with load_if_exists: a retried task
resumes with the trials it already has instead of starting over.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
import warnings
from typing import Any

import keras
import optuna
import pandas as pd

from pipeline import tracking
from pipeline.carry import Selected
from pipeline.config import Config, SearchSpace
from pipeline.features import FEATURES, Prepared, prepare
from pipeline.layout import ensure_sqlite_dir
from pipeline.model import LSTMParams, build_model

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


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
    stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
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
        params = suggest_params(trial, cfg.tune.space)
        prep = cache.setdefault(params.window, prepare(feats, params.window))
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
                [EpochLogger(mc, run_id), KerasPruningCallback(trial, "val_loss")],
                cfg.tune.seed + trial.number,
            )
            losses = history.history["val_loss"]
            best = min(losses)
            trial.set_user_attr("best_epoch", losses.index(best) + 1)
            mc.log_metric(run_id, "best_val_loss", best)
            state, status = "COMPLETE", "FINISHED"
            return best
        except optuna.TrialPruned:
            state, status = "PRUNED", "KILLED"
            raise
        finally:
            mc.set_tag(run_id, "trial_state", state)
            mc.set_terminated(run_id, status)

    return objective


def on_stale_trial(cfg: Config) -> Any:
    """A trial whose worker died (no heartbeat for `tune.grace_period_s`): Optuna has marked it
    FAIL; close its MLflow child run as FAILED too, and queue it again (`tune.stale_retries`)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

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
    study = load_study(cfg, ticker, day)
    # A worker that died mid-trial left it RUNNING: fail it (and close its MLflow run) now,
    # also when the budget is already met and this worker will run no trial.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    started = _started(study)
    done = len([t for t in study.trials if t.state in FINISHED])
    log.info("study %s: %d of %d trial(s) done", study.study_name, done, cfg.tune.n_trials)
    if done < cfg.tune.n_trials:
        study.optimize(
            make_objective(cfg, pd.read_parquet(features_path), parent_id),
            timeout=cfg.tune.timeout_s,
            callbacks=[optuna.study.MaxTrialsCallback(cfg.tune.n_trials, states=FINISHED)],
            gc_after_trial=True,
            show_progress_bar=sys.stderr.isatty(),
            catch=(ValueError, SurplusTrial),
        )
    return len(_started(study) - started)


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
    mc.log_metric(parent_id, "best_val_loss", float(trial.value or 0.0))
    _log_study_plots(cfg, study, parent_id)
    return {
        "study": study.study_name,
        "best_params": trial.params,
        "best_epoch": int(trial.user_attrs.get("best_epoch", cfg.tune.max_epochs)),
        "best_val_loss": float(trial.value or 0.0),
        "trials": len(study.trials),
    }
