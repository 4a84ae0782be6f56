"""Whole histories judged at once, by the daily step's rules: what a backtest reads.

The daily step checks only the rows a day brings; a backtest reads every ticker's whole
history from the source. Those histories go through one GX run of the same per-row
rules (pipeline/data/rules.py's check_rows); a failing row is left out as the daily
step quarantines it, and a ticker the daily step would hold out (a split-like day or a
lasting jump nobody adjusted) or find too short is left out with that reason, so a
vendor's defects never become returns the model is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Config
from pipeline.data import actions
from pipeline.data.rules import Pending, Skipped, big_moves, check_rows, judge
from pipeline.data.suite import suite_params, with_derived_columns


@dataclass(frozen=True)
class Screened:
    """One ticker's history: its clean bars (as adjusted), or why it is left out."""

    bars: pd.DataFrame | None
    left_out: str = ""  # "<status>: <reason>" when bars is None
    dropped_rows: list[dict[str, Any]] = field(default_factory=list)


def screen(cfg: Config, histories: dict[str, pd.DataFrame]) -> dict[str, Screened]:
    """Every ticker's typed bars, checked in one GX run; see the module docstring."""
    splits, params = actions.load_splits(cfg), suite_params(cfg, None)
    pending = []
    for ticker, bars in histories.items():
        seen = _adjusted(bars, splits.get(ticker, []))
        derived = with_derived_columns(seen, adjusted=True, max_move=params["max_abs_log_move"])
        p = Pending(ticker, Path(), merged=bars, checked=derived.assign(ticker=ticker))
        p.jumps = big_moves(derived, params)
        pending.append(p)
    check_rows(pending, params, None)
    return {p.ticker: _conclude(cfg, p, splits.get(p.ticker, [])) for p in pending}


def _adjusted(bars: pd.DataFrame, splits: list[tuple[pd.Timestamp, float]]) -> pd.DataFrame:
    return actions.apply_splits(bars, splits) if splits else bars.reset_index(drop=True)


def _conclude(cfg: Config, p: Pending, splits: list[tuple[pd.Timestamp, float]]) -> Screened:
    # a row whose only fault is a lasting move stays (it is data); the ticker is judged
    bad = [r for r in p.bad_rows if r["rule"] != "plausible_daily_move"]
    dropped = {r["Date"] for r in bad}
    clean = p.merged[~p.merged["Date"].dt.strftime("%Y-%m-%d").isin(dropped)]
    seen = _adjusted(clean, splits)
    try:
        judge(cfg, seen, p.jumps, dropped, {})
    except Skipped as skipped:
        return Screened(None, f"{skipped.status}: {skipped.reason}", bad)
    return Screened(seen, "", bad)
