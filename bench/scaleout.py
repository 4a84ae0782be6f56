"""Scale-out: the same tuning budget on the stack with 1 and 2 Celery workers, side by side.

    .venv/bin/python -m bench.scaleout [--trials 8] [--epochs 15]

For each worker count N: a throw-away stack (`make stack`'s code: own databases,
Redis DB, ports and directory) with N Celery workers and `tune.workers` = N, one
`price_retrain` run for 2013-03-01 triggered through the scheduler. From Airflow's
metadata: the tune step's wall time (first tuning task start to last end) and
finished trials per minute of it, the DAG run's wall time, the sum of its task run
times, and Airflow's overhead: wall time minus the time at least one task was running
(scheduling, queueing and process start between tasks). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from pipeline.deployment import deploy, stack_runs

DAY = "2013-03-01T22:30:00+00:00"


def measure(workers: int, trials: int, epochs: int) -> dict[str, Any]:
    env = {
        "PIPELINE__TICKERS": "[GOOG]",  # one study: the benchmark is tuning's spread over workers
        "PIPELINE__MODEL__SCOPE": "ticker",
        "PIPELINE__STACK__CELERY_WORKERS": str(workers),
        "PIPELINE__STACK__TUNE_WORKERS": str(workers),
        "PIPELINE__TUNE__N_TRIALS": str(trials),
        "PIPELINE__TUNE__MAX_EPOCHS": str(epochs),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp,
        stack_runs.throwaway_stack(Path(tmp), env) as (cfg, _),
    ):
        run_id = f"bench_{workers}_workers"
        start = time.perf_counter()
        stack_runs.trigger(cfg, DAY, run_id)
        state = stack_runs.wait(cfg, run_id, timeout_s=3600)
        seen_s = time.perf_counter() - start
        tasks = stack_runs.task_runs(cfg, run_id)
        spans = [(t.start, t.end) for t in tasks if t.start and t.end]
        tune = [t for t in tasks if t.task_id == "tune"]
        tune_wall = (
            max(t.end for t in tune if t.end) - min(t.start for t in tune if t.start)
        ).total_seconds()
        first, last = stack_runs.run_span(cfg, run_id)
        wall = (last - first).total_seconds()
        storage = deploy.pipeline_env(
            cfg, deploy.load_secrets(deploy.stack_dir(cfg) / "secrets.env")
        )
        study = optuna.load_study(study_name="GOOG-2013-03-01", storage=storage["OPTUNA_STORAGE"])
        states = [t.state.name for t in study.trials]
        finished = [s for s in states if s in ("COMPLETE", "PRUNED")]  # the budget's trials
        return {
            "celery_workers": workers,
            "state": state,
            "tune_tasks": [{"host": t.hostname, "seconds": round(t.seconds, 1)} for t in tune],
            "tune_wall_s": round(tune_wall, 1),
            "trials_finished": len(finished),
            "trials_failed": states.count("FAIL"),
            # of those, started beyond the budget by a parallel worker: failed before training
            "trials_surplus": sum("surplus" in t.user_attrs for t in study.trials),
            "tune_tasks_retried": sum(t.try_number > 1 for t in tune),
            "trials_per_minute": round(len(finished) / tune_wall * 60, 2),
            "dag_run_wall_s": round(wall, 1),
            "task_time_sum_s": round(sum(t.seconds for t in tasks), 1),
            "airflow_overhead_s": round(wall - stack_runs.busy_seconds(spans), 1),
            "trigger_to_seen_done_s": round(seen_s, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    runs = [measure(n, args.trials, args.epochs) for n in (1, 2)]
    one, two = runs
    print(
        json.dumps(
            {
                "budget": {"n_trials": args.trials, "max_epochs": args.epochs},
                "runs": runs,
                "tune_speedup_2_vs_1": round(one["tune_wall_s"] / two["tune_wall_s"], 2),
                "dag_speedup_2_vs_1": round(one["dag_run_wall_s"] / two["dag_run_wall_s"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
