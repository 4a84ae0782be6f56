"""Compaction: remove raw pulls, per-run feature folders and the day's HTML pages older than
`retention` allows,
so a large universe's state does not grow without end.

Age counts back from the run day, not the wall clock: a replay compacts as the days it
replays would have, and nothing dated after the run day is ever touched. The newest
features folder of each ticker or model always stays (promotion reads it). Curated
tables, quarantine, the day's JSON reports and forecasts are kept whole: a page removed is
written again from its day's JSON by `python -m pipeline report DATE`.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from pipeline.config import Config


def dated(name: str) -> dt.date | None:
    """The date a state entry is named by (2013-03-01), else None."""
    try:
        return dt.date.fromisoformat(name) if len(name) == 10 else None
    except ValueError:
        return None


def old_raw_pulls(folders: list[Path], before: dt.date) -> list[Path]:
    """The daily pulls (<DATE>.csv) in `folders` dated before `before`."""
    old = []
    for folder in folders:
        for path in sorted(folder.glob("*.csv")):
            day = dated(path.stem)
            if day is not None and day < before and path.is_file():
                old.append(path)
    return old


def old_feature_dirs(folders: list[Path], before: dt.date) -> list[Path]:
    """The per-run folders (<DATE>/) in `folders` dated before `before`, except each
    folder's newest one."""
    old = []
    for folder in folders:
        runs = sorted((day, p) for p in folder.iterdir() if (day := dated(p.name)) and p.is_dir())
        old += [p for day, p in runs[:-1] if day < before]
    return old


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def compact(cfg: Config, day: dt.date) -> dict[str, Any]:
    """Remove what `cfg.retention` no longer keeps as of `day`; say how much went."""
    keep = cfg.retention
    out: dict[str, Any] = {
        "day": day.isoformat(),
        "raw_files": 0,
        "raw_bytes": 0,
        "feature_dirs": 0,
        "feature_bytes": 0,
        "page_files": 0,
        "page_bytes": 0,
    }
    if keep.raw_days is not None:
        for path in old_raw_pulls(cfg.layout.raw_dirs(), day - dt.timedelta(days=keep.raw_days)):
            size = size_of(path)
            path.unlink(missing_ok=True)
            out["raw_files"] += 1
            out["raw_bytes"] += size
    if keep.features_days is not None:
        before = day - dt.timedelta(days=keep.features_days)
        for path in old_feature_dirs(cfg.layout.features_dirs(), before):
            size = size_of(path)
            shutil.rmtree(path, ignore_errors=True)
            out["feature_dirs"] += 1
            out["feature_bytes"] += size
    if keep.pages_days is not None:  # about 2 MB a day for an index's 394 tickers
        pages = cfg.layout.root / "reports" / "daily"
        before = day - dt.timedelta(days=keep.pages_days)
        for path in sorted(pages.glob("????-??-??.html")) if pages.is_dir() else []:
            if (when := dated(path.stem)) is not None and when < before:
                out["page_bytes"] += size_of(path)
                path.unlink(missing_ok=True)
                out["page_files"] += 1
    out["bytes_freed"] = out["raw_bytes"] + out["feature_bytes"] + out["page_bytes"]
    return out
