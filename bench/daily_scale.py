"""The daily DAG's cost on a quiet day: 4, 64 and 394 real S&P 500 tickers.

    .venv/bin/python -m bench.daily_scale [--sizes 4 64 394] [--make-run-sizes 4 394]
                                          [--root DIR]

Throw-away stores and Airflow home, the embedded S&P 500 universe (`universe: sp500`,
source.kind=sample). Set-up (`prepare`): the universe model is trained once by the
retrain DAG for D0 = 2018-02-01 on the first four tickers with a tiny budget (the daily
DAG's cost is measured, not training's; if the gate refuses so small a model, its
candidate is promoted with --force: the daily DAG needs a production model, any); then a
warm-up daily run for D1 = 2018-02-02 over all 394 tickers fills every curated table and
warms the imports; the state directory is then kept as a snapshot. Each size then runs
the quiet day D2 = 2018-02-05 (every ticker curated up to D1, one new bar each) on the
snapshot restored: the first N of the sorted tickers, in-process (`dag.test()`, as the
replay runs it), then through `airflow dags test` in a subprocess (what `make run` runs,
Airflow's start-up and DAG parsing included). Prints one JSON object: per size, wall
and CPU seconds (the CPUs are shared: CPU seconds and the load average before each run
say how much of the wall time was waiting), ok, the tickers that ended `forecast` and
each step's seconds; and seconds per extra ticker (slope between the smallest and the
largest size) for both.

`--root DIR` keeps the throw-away root (and reuses its set-up when it is already
there; bench/state_growth.py does the same).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import embedded_tickers, load_config, throwaway_env
from pipeline.orchestration import airflow_run, journal
from pipeline.schedule import DAILY, RETRAIN

UNIVERSE = "sp500"
D0, D1, D2 = dt.date(2018, 2, 1), dt.date(2018, 2, 2), dt.date(2018, 2, 5)
TRAIN_ON = 4  # tickers the universe model is trained on (the first of the sorted list)
BUDGET = {
    "PIPELINE__TUNE__N_TRIALS": "2",
    "PIPELINE__TUNE__MAX_EPOCHS": "2",
    "PIPELINE__TUNE__SPACE__UNITS": "[8]",
    "PIPELINE__TUNE__SPACE__WINDOW": "[20]",
}
READY = "prepared.json"  # written in the root once the set-up is done


def tickers(n: int | None = None) -> list[str]:
    """The first n of the universe's sorted tickers (all of them: None)."""
    every = embedded_tickers(UNIVERSE)
    return every if n is None else every[:n]


def state_dir(root: Path) -> Path:
    return root / "state"


def snapshot_dir(root: Path) -> Path:
    return root / "snapshot"


def environment(root: Path) -> dict[str, str]:
    """What the runs see: throw-away stores under `root`, Airflow's home beside the state
    (not in it: the in-process runs keep its database open while the state is restored),
    the S&P 500 universe, the tiny budget and what `make` exports."""
    return {
        **throwaway_env(root),
        **BUDGET,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_run.DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "GX_ANALYTICS_ENABLED": "False",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PIPELINE__UNIVERSE": UNIVERSE,
        "PIPELINE__SOURCE__KIND": "sample",
    }


def use_tickers(names: list[str]) -> None:
    os.environ["PIPELINE__TICKERS"] = json.dumps(names)


def statuses(day: dt.date) -> dict[str, int]:
    """How many tickers ended in each status in the day's report ({} without a report)."""
    path = load_config().layout.root / "reports" / "daily" / f"{day.isoformat()}.json"
    if not path.exists():
        return {}
    out: dict[str, int] = {}
    for row in json.loads(path.read_text())["tickers"].values():
        out[row["status"]] = out.get(row["status"], 0) + 1
    return out


def ensure_production() -> dict[str, Any]:
    """The universe model's production version; the candidate is promoted with --force if
    the gate refused the tiny budget's model (the daily DAG needs one in production)."""
    from pipeline.lifecycle import promotion, registry

    cfg, ticker = load_config(), tickers(1)[0]
    prod = registry.production_version(cfg, ticker)
    if prod is not None:
        return {"version": str(prod.version), "forced": False}
    cand = registry.version_by_alias(cfg, registry.model_name(cfg, ticker), registry.CANDIDATE)
    if cand is None:
        raise RuntimeError("the retrain registered no candidate: see its log under state/logs")
    reason = "bench.daily_scale: the tiny budget's model, so the daily DAG has one to serve"
    promotion.promote(cfg, ticker, str(cand.version), reason, "bench", force=True)
    return {"version": str(cand.version), "forced": True}


def prepare(root: Path) -> dict[str, Any]:
    """Set the environment for `root` and, unless done there before, the set-up: train for
    D0, warm up for D1 over every ticker, snapshot the state. Returns what it did."""
    os.environ.update(environment(root))
    ready = root / READY
    if ready.exists():
        use_tickers(tickers())
        return {**json.loads(ready.read_text()), "reused": True}
    root.mkdir(parents=True, exist_ok=True)
    airflow_run.ensure_airflow_db()
    done: dict[str, Any] = {}
    use_tickers(tickers(TRAIN_ON))
    conf = {
        "day": D0.isoformat(),
        "mode": "tune",
        "reasons": {t: ["no_production"] for t in tickers(TRAIN_ON)},
    }
    start = time.perf_counter()
    rc = airflow_run.in_process(load_config(), RETRAIN, D0, conf)
    done["retrain"] = {"day": D0.isoformat(), "seconds": since(start), "ok": rc == 0}
    done["production"] = ensure_production()
    use_tickers(tickers())
    start = time.perf_counter()
    rc = airflow_run.in_process(load_config(), DAILY, D1)
    done["warm_up"] = {
        "day": D1.isoformat(),
        "tickers": len(tickers()),
        "seconds": since(start),
        "ok": rc == 0,
        "statuses": statuses(D1),
    }
    shutil.rmtree(snapshot_dir(root), ignore_errors=True)
    shutil.copytree(state_dir(root), snapshot_dir(root), symlinks=True)
    ready.write_text(json.dumps(done))
    return done


def restore(root: Path) -> None:
    """The state as the warm-up left it."""
    shutil.rmtree(state_dir(root), ignore_errors=True)
    shutil.copytree(snapshot_dir(root), state_dir(root), symlinks=True)


def json_stdout() -> TextIO:
    """The real stdout, for the one JSON object; whatever else is printed from here on
    (Airflow, MLflow, the pipeline's own lines) goes to stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def since(start: float) -> float:
    return round(time.perf_counter() - start, 1)


Runner = Callable[[Any, str, dt.date], int]


def in_process(cfg: Any, dag_id: str, day: dt.date) -> int:
    return airflow_run.in_process(cfg, dag_id, day)


def make_run(cfg: Any, dag_id: str, day: dt.date) -> int:
    return airflow_run.dag_test(cfg, dag_id, day, progress=False)


def cpu_seconds() -> float:
    """CPU time of this process and of its children waited for (user + system)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def step_seconds(day: dt.date) -> dict[str, float]:
    """Seconds per step of the day's daily run, summed over its chunks (from the journal)."""
    out: dict[str, float] = {}
    for event in journal.read(load_config(), DAILY, day):
        if event.get("event") == "end" and "task" in event:
            out[event["task"]] = round(out.get(event["task"], 0.0) + event["seconds"], 1)
    return out


def quiet_day(root: Path, n: int, runner: Runner) -> dict[str, Any]:
    """The quiet day D2 for the first `n` tickers on the restored snapshot: wall and CPU
    seconds (the CPU is shared: the load average before the run says how busy it was)."""
    restore(root)
    use_tickers(tickers(n))
    cfg = load_config()
    load = round(os.getloadavg()[0], 2)
    cpu, start = cpu_seconds(), time.perf_counter()
    rc = runner(cfg, DAILY, D2)
    took, cpu = since(start), round(cpu_seconds() - cpu, 1)
    ended = statuses(D2)
    out: dict[str, Any] = {
        "seconds": took,
        "cpu_seconds": cpu,
        "load_before": load,
        "ok": rc == 0,
        "forecast": ended.get("forecast", 0),
        "steps": step_seconds(D2),
    }
    if set(ended) != {"forecast"}:
        out["statuses"] = ended
    if rc != 0:
        out["log"] = str(cfg.layout.logs_dir() / f"{DAILY}-{D2.isoformat()}.log")
    return out


def slope(runs: dict[int, dict[str, Any]], key: str = "seconds") -> float | None:
    lo, hi = min(runs), max(runs)
    if hi == lo:
        return None
    return round((runs[hi][key] - runs[lo][key]) / (hi - lo), 3)


def report(out: Any, root: Path, keep: bool, **figures: Any) -> None:
    """The one JSON object a benchmark prints (with the machine and the day), then the
    throw-away root removed unless it is to be kept."""
    figures.update(
        cpus=os.cpu_count(), date=dt.date.today().isoformat(), root=str(root) if keep else None
    )
    print(json.dumps(figures), file=out, flush=True)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[4, 64, 394])
    ap.add_argument("--make-run-sizes", nargs="+", type=int, default=None)
    ap.add_argument("--root", type=Path, default=None, help="keep (and reuse) this root")
    args = ap.parse_args()
    sizes = sorted(set(args.sizes))
    cli_sizes = sorted(set(args.make_run_sizes or sizes))
    if max(sizes + cli_sizes) > len(tickers()):
        ap.error(f"the {UNIVERSE} universe has {len(tickers())} tickers")
    out = json_stdout()
    root = args.root or Path(tempfile.mkdtemp(prefix="daily_scale-"))
    setup = prepare(root)
    runs = {n: quiet_day(root, n, in_process) for n in sizes}
    cli = {n: quiet_day(root, n, make_run) for n in cli_sizes}
    report(
        out,
        root,
        keep=args.root is not None,
        universe=UNIVERSE,
        quiet_day=D2.isoformat(),
        setup=setup,
        in_process=runs,
        make_run=cli,
        seconds_per_extra_ticker={"in_process": slope(runs), "make_run": slope(cli)},
        cpu_seconds_per_extra_ticker={
            "in_process": slope(runs, "cpu_seconds"),
            "make_run": slope(cli, "cpu_seconds"),
        },
        aims_394={"in_process_s": 60, "make_run_s": 120},
        chunk_size=load_config().chunk_size,
    )


if __name__ == "__main__":
    main()
