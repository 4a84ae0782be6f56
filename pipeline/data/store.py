"""The curated per-ticker table (append-only by date, revisions logged) and the quarantine."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.data.bars import COLUMNS, NUMBER_COLUMNS, PRICE_COLUMNS

log = logging.getLogger(__name__)
# vendors round adjusted prices (to 6-10 digits): one re-basing factor within this
REBASE_TOLERANCE = 1e-6


def merge_bars(curated: pd.DataFrame, pull: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Union by date; a pull that changes an already-stored bar wins, and the change is returned.

    Data vendors do correct old bars; taking the correction silently would make two
    runs on "the same" history disagree without anyone knowing, so every changed
    cell comes back as a revision row (Date, column, old, new). Only the stored rows the
    pull overlaps are compared (a day's pull overlaps a few): this runs for every ticker
    every day.
    """
    shared = curated["Date"].isin(pull["Date"]).to_numpy()
    both = curated[shared].merge(pull, on="Date", how="inner", suffixes=("_old", "_new"))
    ratio = rebased(both)
    if ratio is not None:
        # a new split or dividend re-based the adjusted history: one revision, not every cell,
        # and the stored bars older than the pull move with it (no fake jump at its start)
        curated = rescale(curated, ratio)
        both = curated[shared].merge(pull, on="Date", how="inner", suffixes=("_old", "_new"))
    changes = [] if ratio is None else [_rebase_row(both["Date"].iloc[-1], ratio)]
    for col in NUMBER_COLUMNS:
        changed = ~_close(both[f"{col}_old"], both[f"{col}_new"])
        if changed.any():
            diff = both[changed]
            changes.append(
                pd.DataFrame(
                    {
                        "Date": diff["Date"],
                        "column": col,
                        "old": diff[f"{col}_old"],
                        "new": diff[f"{col}_new"],
                    }
                )
            )
    revisions = (
        pd.concat(changes, ignore_index=True).sort_values(["Date", "column"])
        if changes
        else pd.DataFrame(
            {"Date": pd.Series(dtype="datetime64[ns]"), "column": [], "old": [], "new": []}
        )
    )
    kept = curated[~shared]
    merged = pd.concat([kept, pull], ignore_index=True)
    if len(kept) and len(pull) and not kept["Date"].iloc[-1] < pull["Date"].min():
        merged = merged.sort_values("Date", kind="stable")  # a backfill: dates interleave
    elif not pull["Date"].is_monotonic_increasing:
        merged = merged.sort_values("Date", kind="stable")
    return merged[COLUMNS].reset_index(drop=True), revisions.reset_index(drop=True)


def rebased(both: pd.DataFrame) -> float | None:
    """The one factor by which every overlapping stored price differs from the pull's, when
    there is such a factor (other than 1) over at least two days: an adjustment re-basing."""
    if len(both) < 2:
        return None
    ratios = np.concatenate(
        [(both[f"{c}_new"] / both[f"{c}_old"]).to_numpy() for c in PRICE_COLUMNS]
    )
    first = float(ratios[0])
    if not np.isfinite(ratios).all() or abs(first - 1) <= REBASE_TOLERANCE:
        return None
    return first if bool(np.all(np.abs(ratios / first - 1) <= REBASE_TOLERANCE)) else None


def rescale(bars: pd.DataFrame, ratio: float) -> pd.DataFrame:
    out = bars.copy()
    out[PRICE_COLUMNS] = out[PRICE_COLUMNS] * ratio
    out["Volume"] = out["Volume"] / ratio
    return out


def _rebase_row(day: pd.Timestamp, ratio: float) -> pd.DataFrame:
    return pd.DataFrame({"Date": [day], "column": ["adjustment"], "old": [1.0], "new": [ratio]})


def _close(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a - b).abs() <= 1e-9 * b.abs().clip(lower=1.0)


@contextlib.contextmanager
def curated_lock(cfg: Config, ticker: str) -> Iterator[None]:
    """One writer per curated table: validate reads, merges and replaces it under this lock
    (two days validated at once would otherwise each merge into the same old table, and
    the later replace would drop the other's bar). A second writer waits."""
    import fcntl

    path = cfg.layout.curated_path(ticker).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_curated(cfg: Config, ticker: str, until: dt.date | None = None) -> pd.DataFrame:
    """The curated table; with `until` (a date), only the bars a run on that day could see."""
    path = cfg.layout.curated_path(ticker)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS}).astype(
            {"Date": "datetime64[ns]"}
        )
    bars = pd.read_parquet(path)
    if until is not None:
        bars = bars[bars["Date"] <= pd.Timestamp(until)].reset_index(drop=True)
    return bars


def publish_curated(
    cfg: Config, ticker: str, merged: pd.DataFrame, revisions: pd.DataFrame, day: dt.date
) -> Path:
    """Replace the curated table atomically and append any revisions to its log."""
    path = cfg.layout.curated_path(ticker)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    merged.to_parquet(tmp, index=False)
    tmp.replace(path)
    if len(revisions):
        log_path = cfg.layout.revisions_path(ticker)
        revisions.assign(run_day=day.isoformat()).to_csv(
            log_path, mode="a", header=not log_path.exists(), index=False
        )
        log.warning(
            "%s: %d revised cell(s) of old bars taken from the %s pull; see %s",
            ticker,
            len(revisions),
            day,
            log_path,
        )
    return path


def quarantine(cfg: Config, ticker: str, day: dt.date, raw: Path, report: dict[str, Any]) -> Path:
    """Move a rejected pull aside with its report, so the next run pulls afresh."""
    where = cfg.layout.quarantine_dir(ticker, day)
    where.mkdir(parents=True, exist_ok=True)
    if raw.exists():
        shutil.move(str(raw), where / raw.name)
    (where / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return where


def quarantine_rows(cfg: Config, ticker: str, day: dt.date, rows: list[dict[str, Any]]) -> Path:
    """Keep older rows that failed a per-row rule (each with its rule and values) in the
    ticker's row quarantine, once per date and rule: the table goes on without them."""
    path = cfg.layout.quarantined_rows(ticker)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame(rows).assign(run_day=day.isoformat())
    if path.exists():
        known = pd.read_csv(path, dtype=str)
        seen = set(zip(known["Date"], known["rule"], strict=True))
        new = new[[(d, r) not in seen for d, r in zip(new["Date"], new["rule"], strict=True)]]
    if len(new):
        new.to_csv(path, mode="a", header=not path.exists(), index=False)
    return path


def read_quarantined_rows(cfg: Config, ticker: str) -> pd.DataFrame:
    path = cfg.layout.quarantined_rows(ticker)
    return pd.read_csv(path, dtype=str) if path.exists() else pd.DataFrame()


def read_adjusted(cfg: Config, ticker: str, until: dt.date | None = None) -> pd.DataFrame:
    """The curated bars with the corporate-actions file's splits applied (the table keeps
    the prices as the vendor sent them): what features, forecasts and monitoring read."""
    from pipeline.data import actions

    bars = read_curated(cfg, ticker, until)
    splits = actions.load_splits(cfg).get(ticker)
    return actions.apply_splits(bars, splits) if splits else bars
