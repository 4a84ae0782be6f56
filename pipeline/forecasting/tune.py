"""Tune: an Optuna TPE search over the LSTM, pruned through Keras, every trial an MLflow child run.

Here: the objective (one trial: suggest, fit, log), a worker's run of it, and the best
trial. The study it runs in (storage keyed to ticker and run date, so a retried task
resumes; who runs each trial; the budget workers share) is pipeline/forecasting/study.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import sys
import time
from typing import Any

import keras
import optuna
import pandas as pd

from pipeline import tracking
from pipeline.config import Config
from pipeline.data.features import FEATURES, Prepared, prepare
from pipeline.forecasting.model import LSTMParams, build_model
from pipeline.forecasting.sampling import VALIDATION_BATCH, WindowBatches, fixed_sample
from pipeline.forecasting.study import (
    FINISHED,
    SurplusTrial,
    load_study,
    owner,
    resume,
    started_trials,
    stop_after_failures,
    within_budget,
)
from pipeline.sections import SearchSpace

log = logging.getLogger(__name__)
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
    params: LSTMParams,
    prep: Prepared,
    epochs: int,
    patience: int,
    callbacks: list[Any],
    seed: int,
    windows_per_epoch: int | None = None,
    val_windows: int | None = None,
    val_seed: int = 0,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train on the train split, early-stopped on validation loss (best weights kept).

    An epoch is `windows_per_epoch` training windows (sampling.py; None: every one), and
    validation a fixed sample of `val_windows` (None: every one), drawn with `val_seed`
    alone, so every trial of a study is judged on the same windows."""
    keras.utils.set_random_seed(seed)
    model = build_model(params, len(FEATURES))
    train = prep.rows["train"]
    batches = WindowBatches(prep, train, params.batch_size, windows_per_epoch or len(train), seed)
    val = prep.rows["val"]
    stop = keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="min", patience=patience, restore_best_weights=True
    )
    history = model.fit(
        batches,
        validation_data=prep.windows(fixed_sample(val, val_windows or len(val), val_seed)),
        validation_batch_size=VALIDATION_BATCH,
        epochs=epochs,
        callbacks=[stop, *callbacks],
        verbose=0,
        shuffle=False,  # the batches are a shuffled sample already
    )
    return model, history


class TrialUnfit(ValueError):
    """This trial's parameters cannot work here (diverged, window too long for the data);
    other parameters may. Any other error stops the study at once: it would fail them all."""


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
        if params.window not in cache:  # rows and scalers only: windows are gathered per batch
            cache[params.window] = prepare(feats, params.window, cfg.model.base)
        prep = cache[params.window]
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
                cfg.tune.windows_per_epoch,
                cfg.tune.val_windows,
                cfg.tune.seed,  # the same validation windows for every trial
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
    return bool(prep.count("train") and prep.count("val"))


def unfit(trial: optuna.Trial, reason: str) -> float:
    """Fail this trial for its own parameters; the study goes on (see TrialUnfit)."""
    trial.set_user_attr("fail_reason", reason)
    raise TrialUnfit(f"trial {trial.number}: {reason}")


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
    started = started_trials(study)
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
    return len(started_trials(study) - started)


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
