"""State growth per quiet day for the 394 S&P 500 tickers, before and after bounded pulls.

    .venv/bin/python -m bench.state_growth [--root DIR]

The set-up of bench/daily_scale.py (the universe model trained for 2018-02-01, a warm-up
daily run for 2018-02-02 over every ticker; `--root` reuses one `bench.daily_scale
--root` left), then the quiet day 2018-02-05 for all 394 tickers as `make run` runs it
(`airflow dags test`) on the restored snapshot. "After" is measured: the growth of the
state directory over that run, in all and per top-level entry (raw/, curated/,
quarantine/, reports/, runs/, forecasts.sqlite, logs/, ...), in bytes of the files and
on disk (allocated blocks, what `du` counts); beside it, the stores the throw-away root
keeps outside the state directory (Airflow's home, under state/ in `make run`; MLflow),
the growth of the data in Airflow's database, and how much of the run's log is the
tasks' returned values (Airflow logs each task's carry).
"Before" is computed: the old ingest re-sent each ticker's whole history every day, so
the day's raw pulls were each ticker's history up to the day written as CSV (as ingest
writes a pull); the rest of the day's growth is the same. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import daily_scale
from pipeline.config import load_config
from pipeline.data import ingest

AIM_BYTES = 2_000_000


def usage(path: Path) -> tuple[int, int]:
    """(bytes of the files, bytes on disk) under `path` (a file or a folder)."""
    if not path.exists():
        return 0, 0
    found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.lstat() for p in found]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def measure(root: Path) -> dict[str, tuple[int, int]]:
    """Usage of each top-level entry of the state, of the whole state, and of the stores
    outside it."""
    state = daily_scale.state_dir(root)
    out = {p.name: usage(p) for p in sorted(state.iterdir())}
    out["(state in all)"] = usage(state)
    out["(airflow home)"] = usage(root / "airflow")
    out["(mlflow)"] = usage(root / "mlruns")
    return out


def airflow_db_used(root: Path) -> int:
    """Bytes of Airflow's SQLite database in use (its pages less the free ones: a run of a
    day run before reuses the pages the deleted run freed, so the file need not grow)."""
    path = root / "airflow" / "airflow.db"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        pages, free, size = (
            db.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
    return int((pages - free) * size)


def returned_values(log: Path) -> int:
    """Bytes of the Airflow log's "Returned value was:" lines (each task's carry)."""
    if not log.exists():
        return 0
    with log.open("rb") as f:
        return sum(len(line) for line in f if b"Returned value was:" in line)


def growth(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> Any:
    names = sorted(set(before) | set(after))
    return {
        n: {
            "bytes": after.get(n, (0, 0))[0] - before.get(n, (0, 0))[0],
            "disk": after.get(n, (0, 0))[1] - before.get(n, (0, 0))[1],
        }
        for n in names
    }


def day_pulls(root: Path, day: dt.date) -> tuple[int, int, int]:
    """(files, bytes, bytes on disk) of the day's raw pulls as the run wrote them."""
    found = list((daily_scale.state_dir(root) / "raw").glob(f"*/{day.isoformat()}.csv"))
    size, disk = (sum(v) for v in zip(*(usage(p) for p in found), strict=True)) if found else (0, 0)
    return len(found), size, disk


def full_history_pulls(tickers: list[str], day: dt.date) -> tuple[int, int, int]:
    """(files, bytes, bytes on disk) the old ingest would have written for `day`: each
    ticker's whole history up to the day, as CSV, as ingest writes a pull."""
    size = disk = 0
    with tempfile.TemporaryDirectory(prefix="full_pulls-") as tmp:
        for ticker in tickers:
            raw = ingest.read_text_csv(ingest.sample_path(ticker, daily_scale.UNIVERSE))
            path = Path(tmp) / f"{ticker}.csv"
            ingest.replay_until(raw, day).to_csv(path, index=False)
            got = usage(path)
            size, disk = size + got[0], disk + got[1]
    return len(tickers), size, disk


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=None, help="keep (and reuse) this root")
    args = ap.parse_args()
    out = daily_scale.json_stdout()
    root = args.root or Path(tempfile.mkdtemp(prefix="state_growth-"))
    setup = daily_scale.prepare(root)
    names = daily_scale.tickers()
    day = daily_scale.D2
    daily_scale.restore(root)
    daily_scale.use_tickers(names)
    cfg = load_config()
    before, db_before = measure(root), airflow_db_used(root)
    start = time.perf_counter()
    rc = daily_scale.make_run(cfg, daily_scale.DAILY, day)
    seconds = daily_scale.since(start)
    after, db_after = measure(root), airflow_db_used(root)
    log = returned_values(cfg.layout.logs_dir() / f"{daily_scale.DAILY}-{day.isoformat()}.log")
    grew = growth(before, after)
    files, pulled, pulled_disk = day_pulls(root, day)
    _, full, full_disk = full_history_pulls(names, day)
    state = grew["(state in all)"]
    totals = {
        "state": state,
        "state_and_airflow_home": {k: state[k] + grew["(airflow home)"][k] for k in state},
    }
    swap = {"bytes": full - pulled, "disk": full_disk - pulled_disk}  # full pulls instead
    per_day = {
        what: {"after": got, "before": {k: got[k] + swap[k] for k in got}}
        for what, got in totals.items()
    }
    daily_scale.report(
        out,
        root,
        keep=args.root is not None,
        universe=daily_scale.UNIVERSE,
        tickers=len(names),
        quiet_day=day.isoformat(),
        run={"how": "airflow dags test", "seconds": seconds, "ok": rc == 0},
        statuses=daily_scale.statuses(day),
        setup=setup,
        raw_pulls_of_the_day={
            "after_bounded": {"files": files, "bytes": pulled, "disk": pulled_disk},
            "before_full_history": {"files": len(names), "bytes": full, "disk": full_disk},
        },
        growth_after=grew,
        growth_per_quiet_day=per_day,
        airflow_db_used_bytes_growth=db_after - db_before,
        log_returned_value_lines_bytes=log,
        aim_bytes=AIM_BYTES,
    )


if __name__ == "__main__":
    main()
