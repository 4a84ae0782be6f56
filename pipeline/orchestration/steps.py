"""The daily sequence, written once.

Each step's adapter takes the config and the carry and returns only the keys it
adds (its TypedDict in pipeline/carry.py). The DAG makes one task per name in
SEQUENCE, in that order (tune fanned out over `tune.workers` tasks sharing one
study); `python -m pipeline run` loops over the same adapters in-process.
Step modules are imported inside the adapters: importing this module stays
cheap enough for a DAG file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from pipeline.carry import (
    Carry,
    Evaluated,
    Featured,
    Forecasted,
    Ingested,
    Monitored,
    Promoted,
    Registered,
    Selected,
    Tidied,
    Trained,
    Tuned,
    Validated,
)

if TYPE_CHECKING:
    from pipeline.config import Config


def start(ticker: str, day: dt.date, pipeline_run_id: str) -> Carry:
    """The carry a ticker's run begins with (the keys of `Started`)."""
    from pipeline.layout import check_ticker

    return {
        "ticker": check_ticker(ticker),
        "day": day.isoformat(),
        "pipeline_run_id": pipeline_run_id,
    }


def run_day(c: Carry) -> dt.date:
    return dt.date.fromisoformat(c["day"])


def ingest(cfg: Config, c: Carry) -> Ingested:
    from pipeline.data import ingest as step

    return step.run(cfg, c["ticker"], run_day(c))


def validate(cfg: Config, c: Carry) -> Validated:
    """Raises validate.ValidationFailed on bad data: nothing downstream may run."""
    from pipeline.data import validate as step

    return step.run(cfg, c["ticker"], run_day(c), c["raw_path"])


def monitor(cfg: Config, c: Carry) -> Monitored:
    from pipeline.monitoring import monitor as step

    return step.run(cfg, c["ticker"], run_day(c))


def features(cfg: Config, c: Carry) -> Featured:
    from pipeline.data import features as step

    return step.run(cfg, c["ticker"], run_day(c))


def tune(cfg: Config, c: Carry) -> Tuned:
    """One tuning worker; several may run at once on one shared study and MLflow run. A
    retrain that refits (pipeline/operations/retrain.py) runs no trials."""
    import json

    from pipeline import tracking
    from pipeline.forecasting import tune as step

    parent = tracking.parent_run(cfg, c["ticker"], run_day(c), c["pipeline_run_id"])
    if plan := c.get("retrain"):
        tags = {"retrain_trigger": plan["trigger"], "retrain_mode": plan["mode"]}
        tags["retrain_reasons"] = json.dumps(plan["reasons"])
        tracking.log_batch(tracking.client(cfg), parent, tags=tags)  # parallel tasks: safe
    if refit_params(cfg, c) is not None:
        return {"parent_run_id": parent, "trials_run": 0}
    ran = step.run(cfg, c["ticker"], run_day(c), c["features_path"], parent)
    return {"parent_run_id": parent, "trials_run": ran}


def refit_params(cfg: Config, c: Carry) -> tuple[dict[str, Any], int] | None:
    """The last tuned parameters when this run refits with them (else None: it tunes)."""
    from pipeline.data.universe import model_key
    from pipeline.lifecycle.tuned import production_params

    if (c.get("retrain") or {}).get("mode") != "refit":
        return None
    return production_params(cfg, model_key(cfg, c["ticker"]))


def best(cfg: Config, c: Carry) -> Selected:
    from pipeline.forecasting import study as step  # reads the study: no TensorFlow import

    if found := refit_params(cfg, c):
        return {"study": "", "best_params": found[0], "best_epoch": found[1], "trials": 0}
    return step.best(cfg, c["ticker"], run_day(c), c["parent_run_id"])


def train(cfg: Config, c: Carry) -> Trained:
    from pipeline.forecasting import train as step

    return step.run(
        cfg,
        c["ticker"],
        run_day(c),
        c["features_path"],
        c["parent_run_id"],
        c["best_params"],
        c["best_epoch"],
        c["validation"],
    )


def evaluate(cfg: Config, c: Carry) -> Evaluated:
    from pipeline.evaluation import evaluate_run as step
    from pipeline.lifecycle.registry import production_version

    production = production_version(cfg, c["ticker"])  # compared with on the same days
    ev = step.run(
        cfg,
        c["ticker"],
        run_day(c),
        c["features_path"],
        c["model_uri"],
        c["parent_run_id"],
        production,
    )
    return {"evaluation": ev}


def register(cfg: Config, c: Carry) -> Registered:
    from pipeline.lifecycle import evidence, registry

    found = evidence.collect(c["evaluation"], c["fingerprint"], c["params"], c["validation"])
    found[evidence.FORECASTER_TAG] = "lstm"
    version = registry.register(cfg, c["ticker"], c["model_uri"], c["parent_run_id"], found)
    return {"version": version}


def promote(cfg: Config, c: Carry) -> Promoted:
    """The gate on the new version; on a state with no production model, the best of it
    and HAR serves when the gate refuses it (lifecycle/fallback.py)."""
    from pipeline.lifecycle import evidence, fallback
    from pipeline.lifecycle import promotion as step

    summary = step.run(cfg, c["ticker"], c["version"], c["evaluation"], c["parent_run_id"])
    served = fallback.serve_best(
        cfg,
        c["ticker"],
        run_day(c),
        c["features_path"],
        summary,
        c["evaluation"],
        lambda ev: evidence.collect(ev, c["fingerprint"], {"kind": "har"}, c["validation"]),
        c["parent_run_id"],
    )
    if served is not None:
        summary["production_version"] = served.get("production_version")
        summary["fallback"] = served  # what serves, and why; or why nothing could
    return {"promotion": summary}


def tidy(cfg: Config, c: Carry) -> Tidied:
    from pipeline.lifecycle import retention

    return {"tidied": retention.tidy(cfg, c["ticker"], run_day(c))}


def forecast(cfg: Config, c: Carry) -> Forecasted:
    from pipeline.monitoring import forecast as step

    return step.run(cfg, c["ticker"], run_day(c))


Step = Callable[["Config", Carry], Mapping[str, Any]]
STEPS: dict[str, Step] = {
    "ingest": ingest,
    "validate": validate,
    "monitor": monitor,
    "features": features,
    "tune": tune,
    "best": best,
    "train": train,
    "evaluate": evaluate,
    "register": register,
    "promote": promote,
    "tidy": tidy,
    "forecast": forecast,
}
SEQUENCE: tuple[str, ...] = tuple(STEPS)  # the in-process runner's order (`pipeline run`)
DAILY_STEPS = ("ingest", "validate", "monitor", "forecast")  # price_daily, per ticker
DATA_STEPS = ("ingest", "validate", "features")  # price_retrain, per ticker
MODEL_STEPS = SEQUENCE[4:-1]  # price_retrain, per model: the universe's one, or each ticker's
assert MODEL_STEPS[0] == "tune" and MODEL_STEPS[-1] == "tidy"
FAN_OUT = "tune"  # the DAG runs this step as `tune.workers` parallel tasks per ticker


def advance(cfg: Config, name: str, c: Carry, final: bool = True) -> Carry:
    """Run one step and return the carry with its keys added.

    If it fails and no retry will follow (`final`), the run's open MLflow parent run is
    closed as FAILED (`abandon`) before the error goes on.
    """
    try:
        return cast(Carry, {**c, **STEPS[name](cfg, c)})
    except Exception:
        if final:
            with contextlib.suppress(Exception):  # the step's own error is the one to see
                abandon(cfg, name, c)
        raise


def abandon(cfg: Config, name: str, c: Carry) -> None:
    """After step `name` failed for good: close the ticker's open MLflow run as FAILED."""
    from pipeline import tracking

    tracking.close_failed_parent(cfg, c["ticker"], c["pipeline_run_id"], name)


def run_steps(cfg: Config, c: Carry, names: Iterable[str] = SEQUENCE) -> Carry:
    """Steps in order, in this process: all of them, or a slice."""
    for name in names:
        c = advance(cfg, name, c)
    return c
