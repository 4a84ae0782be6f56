"""The rules a ticker's rows and history are judged by: the daily step's (validate.py)
and the backtest's screening of whole histories (history.py) alike.

A failing row is quarantined as that row; a day that moved beyond plausible and stayed
there, or looks like an unadjusted split, holds the ticker out; too short a history is
its own status. Each ends as ValidationFailed (the day is refused) or Skipped (the
ticker waits), never as a silent fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.carry import Validated
from pipeline.config import Config
from pipeline.data.bars import Problem
from pipeline.data.splits import split_days, split_text
from pipeline.data.suite import fmt, row_expectations, run_suite


class ValidationFailed(RuntimeError):
    """Raised by run(): the message lists every failed rule with example rows."""


class Skipped(RuntimeError):
    """A ticker that is fine as data but cannot be forecast or trained on yet: held out
    (a split-like day with no adjustment source) or too short. Its own status, not a
    failure of the day."""

    def __init__(self, status: str, reason: str, summary: Any = None):
        self.status, self.reason, self.summary = status, reason, dict(summary or {})
        super().__init__(f"{status}: {reason}")


HELD_OUT, TOO_SHORT = "held_out", "too_short"


@dataclass
class Pending:
    """One ticker of a chunk between reading its pull and publishing."""

    ticker: str
    raw: Path
    merged: pd.DataFrame = field(default_factory=pd.DataFrame)
    revisions: pd.DataFrame = field(default_factory=pd.DataFrame)
    checked: pd.DataFrame = field(default_factory=pd.DataFrame)  # derived rows to check
    problems: list[Problem] = field(default_factory=list)  # refuse the day
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    stored: pd.DataFrame = field(default_factory=pd.DataFrame)  # the table before the pull
    later: pd.DataFrame = field(default_factory=pd.DataFrame)  # merged rows after the day
    jumps: list[tuple[pd.Timestamp, float]] = field(default_factory=list)  # lasting moves
    unlisted: bool = False  # no bar yet on or before the day, none stored: not listed yet


def big_moves(derived: pd.DataFrame, params: dict[str, Any]) -> list[tuple[pd.Timestamp, float]]:
    """Days that moved beyond plausible (with_derived_columns' abs_log_return). One that does
    not revert is not one bad row: a level shift (an unadjusted corporate action, a change
    of units) holds the ticker out, rows kept."""
    big = (derived["abs_log_return"] > params["max_abs_log_move"]).to_numpy()
    return list(zip(derived["Date"][big], derived["abs_log_return"][big], strict=True))


def check_rows(pending: list[Pending], params: dict[str, Any], docs_dir: Path | None) -> None:
    """One GX run over every ticker's new rows; each failing row goes back to its ticker."""
    frames = [p.checked for p in pending if not p.problems and len(p.checked)]
    if not frames:
        return
    frame = pd.concat(frames, ignore_index=True)
    results = run_suite(frame, row_expectations(), params, docs_dir, result_format="COMPLETE")
    rules: dict[int, list[str]] = {}  # frame row -> the rules it failed, in the suite's order
    for r in results:
        if r.success:
            continue
        rule = r.expectation_config.meta.get("rule", r.expectation_config.type)
        for i in (r.result or {}).get("unexpected_index_list") or []:
            if rule not in rules.setdefault(i, []):
                rules[i].append(rule)
    owner = {p.ticker: p for p in pending}
    for i in sorted(rules):
        row = frame.loc[i]
        values = {c: fmt(row[c]) for c in ("Open", "High", "Low", "Close", "Volume")}
        owner[row["ticker"]].bad_rows.append(
            {"Date": f"{row['Date']:%Y-%m-%d}", "rule": ", ".join(rules[i]), **values}
        )


def judge(
    cfg: Config,
    seen: pd.DataFrame,
    jumps: list[tuple[pd.Timestamp, float]],
    dropped: set[str],
    summary: Validated,
) -> None:
    """Skipped when clean bars (as adjusted) cannot be learnt from yet: a split-like day or
    a lasting jump (held out), or too short a history."""
    apparent = [(d, f"apparent {split_text(r)}") for d, r in split_days(seen)]
    hold_out(
        apparent, "look like a split or share dividend the prices were not adjusted for", summary
    )
    lasting = [(d, f"|log move| {m:.2f}") for d, m in jumps if f"{d:%Y-%m-%d}" not in dropped]
    hold_out(lasting, "moved beyond validation.max_abs_log_move and stayed there", summary)
    if len(seen) < cfg.validation.min_history_rows:
        raise Skipped(
            TOO_SHORT,
            f"{len(seen)} valid sessions, {cfg.validation.min_history_rows} needed "
            "(validation.min_history_rows); it joins once it has them",
            summary,
        )


def hold_out(days: list[tuple[pd.Timestamp, str]], what: str, summary: Validated) -> None:
    """Skipped, held out, naming the days (and what each looks like), when there are any."""
    if days:
        shown = "; ".join(f"{d:%Y-%m-%d} ({note})" for d, note in days[:3])
        raise Skipped(
            HELD_OUT,
            f"{len(days)} day(s) {what}: {shown}; held out of training and forecasting until "
            "an adjustment source covers them (source.actions_file, see "
            "docs/configuration.md) or the data are corrected",
            summary,
        )
