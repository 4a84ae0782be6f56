"""Tuning efficiency: best validation loss vs training time, Optuna+pruning vs a full grid.

    .venv/bin/python -m bench.tuning [--trials 9] [--epochs 15]

Grid: units {50, 100, 150} x batch size {32, 64, 128}, each trained to early stop.
Optuna: TPE over units [32, 160] and the same batch sizes, MedianPruner through
the Keras pruning callback, same trial count. Everything else fixed (window 20,
one layer, dropout 0.1, lr 1e-3). Prints one JSON object with best-so-far curves.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import optuna
from optuna_integration import KerasPruningCallback

from bench.common import sample_features
from pipeline.data.features import prepare
from pipeline.forecasting.model import LSTMParams
from pipeline.forecasting.tune import MONITOR, fit

FIXED: dict[str, Any] = {"layers": 1, "dropout": 0.1, "learning_rate": 1e-3, "window": 20}


def _curve(results: list[tuple[float, float]]) -> list[dict[str, float]]:
    best, out = float("inf"), []
    for elapsed, loss in results:
        best = min(best, loss)
        out.append({"seconds": round(elapsed, 1), "best_val_loss": round(best, 5)})
    return out


def grid(prep: Any, epochs: int, patience: int) -> dict[str, Any]:
    start, results = time.perf_counter(), []
    for units in (50, 100, 150):
        for batch in (32, 64, 128):
            params = LSTMParams(units=units, batch_size=batch, **FIXED)
            _, hist = fit(params, prep, epochs, patience, [], seed=0)
            results.append((time.perf_counter() - start, min(hist.history[MONITOR])))
    return {
        "trials": len(results),
        "seconds": round(time.perf_counter() - start, 1),
        "best_val_loss": round(min(r[1] for r in results), 5),
        "curve": _curve(results),
    }


def search(prep: Any, trials: int, epochs: int, patience: int) -> dict[str, Any]:
    start, results = time.perf_counter(), []

    def objective(trial: optuna.Trial) -> float:
        params = LSTMParams(
            units=trial.suggest_int("units", 32, 160, step=16),
            batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
            **FIXED,
        )
        try:
            _, hist = fit(
                params, prep, epochs, patience, [KerasPruningCallback(trial, MONITOR)], seed=0
            )
        except optuna.TrialPruned:
            results.append((time.perf_counter() - start, float("inf")))  # time spent, no gain
            raise
        loss = min(hist.history[MONITOR])
        results.append((time.perf_counter() - start, loss))
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    study.optimize(objective, n_trials=trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {
        "trials": len(study.trials),
        "pruned": pruned,
        "seconds": round(time.perf_counter() - start, 1),
        "best_val_loss": round(study.best_value, 5),
        "best_params": study.best_params,
        "curve": _curve(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=3)
    args = parser.parse_args()
    _, feats = sample_features()
    prep = prepare(feats, FIXED["window"])
    out = {
        "grid": grid(prep, args.epochs, args.patience),
        "optuna_pruned": search(prep, args.trials, args.epochs, args.patience),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
