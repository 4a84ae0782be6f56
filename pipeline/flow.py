"""The model half in one process: tune -> train -> evaluate -> register -> promote.

The DAG runs these as separate tasks; `python -m pipeline run` runs them here.
"""

from __future__ import annotations

from typing import Any

from pipeline import evaluate, registry, tracking, train, tune
from pipeline.config import Config


def evidence(
    ev: dict[str, Any], trained: dict[str, Any], validation: dict[str, Any]
) -> dict[str, Any]:
    """What a registered version carries as tags: why anyone should trust it."""
    keys = [k for k in ev if k.startswith(("model_", "naive_", "production_", "dm_"))]
    return {
        **{k: ev[k] for k in keys},
        "first_test_date": ev["first_test_date"],
        "last_test_date": ev["last_test_date"],
        "data_fingerprint": trained["fingerprint"],
        "validation": validation,
        "params": trained["params"],
        "code_version": tracking.code_version(),
    }


def promote_and_finish(
    cfg: Config, ticker: str, version: str, ev: dict[str, Any], parent_run_id: str
) -> dict[str, Any]:
    """Apply the gate, close the run, and return the one-line summary."""
    promo = registry.promote_if_better(cfg, ticker, version, ev, parent_run_id)
    tracking.client(cfg).set_terminated(parent_run_id, "FINISHED")
    return summary(promo, ev, parent_run_id)


def summary(promo: dict[str, Any], ev: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The contract line of `python -m pipeline run`."""
    pick = ("mae", "mase", "directional_accuracy")
    return {
        "model_name": promo["model_name"],
        "version": promo["version"],
        "promoted": promo["promoted"],
        "reason": promo["reason"],
        "production_version": promo["production_version"],
        "run_id": run_id,
        "first_test_date": ev["first_test_date"],
        "last_test_date": ev["last_test_date"],
        "test_days": ev["test_days"],
        "model": {k: ev[f"model_{k}"] for k in pick},
        "naive": {k: ev[f"naive_{k}"] for k in pick},
    }


def train_and_promote(
    cfg: Config,
    ticker: str,
    day: str,
    features_path: str,
    pipeline_run_id: str,
    validation: dict[str, Any],
) -> dict[str, Any]:
    tuned = tune.run(cfg, ticker, day, features_path, pipeline_run_id)
    parent = tuned["parent_run_id"]
    trained = train.run(
        cfg,
        ticker,
        day,
        features_path,
        parent,
        tuned["best_params"],
        tuned["best_epoch"],
        validation,
    )
    ev = evaluate.run(cfg, ticker, day, features_path, trained["model_uri"], parent)
    version = registry.register(
        cfg, ticker, trained["model_uri"], parent, evidence(ev, trained, validation)
    )
    return promote_and_finish(cfg, ticker, version, ev, parent)
