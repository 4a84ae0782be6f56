"""Validate, the daily step: the rows a day brings, many tickers in one GX run.

Per ticker, a failing newest bar (or an unreadable or stale pull) quarantines its day
and nothing downstream runs on it; a failing older row is quarantined as that row and
the ticker goes on; a ticker with a split-like day or a lasting jump nobody adjusted is
held out, one with too short a history is too short. The suite's rules and its GX run
are pipeline/data/suite.py's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.carry import Validated
from pipeline.config import Config
from pipeline.data import store
from pipeline.data.bars import BarsError, Problem, read_bars_csv
from pipeline.data.rules import (
    TOO_SHORT,
    Pending,
    Skipped,
    ValidationFailed,
    big_moves,
    check_rows,
    judge,
)
from pipeline.data.suite import (
    SUITE_PATH,
    expected_session,
    fmt,
    suite_params,
    with_derived_columns,
)


def run_chunk(
    cfg: Config, day: dt.date, raw_paths: dict[str, str], docs_dir: Path | None = None
) -> dict[str, Validated | Exception]:
    """Validate the day's pulls of many tickers with one GX run over the rows they bring
    (the stored history was checked when it arrived). Per ticker: a failing older row is
    quarantined as that row and the ticker goes on without it; a failing newest bar or a
    stale or unreadable pull quarantines the ticker's day (ValidationFailed, curated table
    untouched); a ticker with a split-like day it cannot adjust, or too short a history,
    is published and then Skipped. Returns each ticker's result or exception."""
    from contextlib import ExitStack

    from pipeline.data import actions

    out: dict[str, Validated | Exception]
    splits = actions.load_splits(cfg)
    params = suite_params(cfg, day)
    with ExitStack() as locks:  # read, merge and replace: one writer per table at a time
        for ticker in raw_paths:
            locks.enter_context(store.curated_lock(cfg, ticker))
        pending, out = [], {}
        for t, path in raw_paths.items():
            try:
                pending.append(_prepare(cfg, t, day, Path(path), splits.get(t, []), params))
            except Exception as exc:  # e.g. an unreadable stored table: this ticker only
                out[t] = exc
        check_rows(pending, params, docs_dir)
        for p in pending:
            try:
                out[p.ticker] = _conclude(cfg, p, day, splits.get(p.ticker, []), docs_dir)
            except Exception as exc:  # one ticker's problem is its own
                out[p.ticker] = exc
    return out


def _prepare(
    cfg: Config,
    ticker: str,
    day: dt.date,
    raw: Path,
    splits: list[tuple[pd.Timestamp, float]],
    params: dict[str, Any],
) -> Pending:
    """Read the pull, merge it into the stored table, and derive the rows it brings."""
    from pipeline.data import actions

    p = Pending(ticker, raw, stored=store.read_curated(cfg, ticker))
    try:
        pull = read_bars_csv(raw)
    except BarsError as exc:
        p.unlisted = p.stored.empty and [f.rule for f in exc.problems] == ["rows"]
        p.problems = exc.problems
        return p
    merged, p.revisions = store.merge_bars(p.stored, pull)
    # judge what a run on `day` sees: a backfill must not see bars from its future
    p.merged = merged[merged["Date"] <= pd.Timestamp(day)].reset_index(drop=True)
    p.later = merged[merged["Date"] > pd.Timestamp(day)]
    if p.merged.empty:
        p.unlisted = p.stored.empty
        p.problems = [Problem("rows", f"no bars on or before {day}")]
        return p
    seen = actions.apply_splits(p.merged, splits) if splits else p.merged
    derived = with_derived_columns(seen, adjusted=True, max_move=params["max_abs_log_move"])
    brought = p.merged["Date"].isin(pull["Date"]).to_numpy()
    p.checked = derived[brought].assign(ticker=ticker)
    p.jumps = big_moves(derived, params)
    return p


def _conclude(
    cfg: Config,
    p: Pending,
    day: dt.date,
    splits: list[tuple[pd.Timestamp, float]],
    docs_dir: Path | None,
) -> Validated:
    """Publish, quarantine or skip one ticker after the chunk's GX run."""
    from pipeline.data import actions, gaps

    if p.unlisted:
        raise Skipped(TOO_SHORT, f"no bar yet on or before {day} (listed later); it joins then")
    newest = p.merged["Date"].max() if len(p.merged) else None
    expected = params_session(cfg, day)
    if not p.problems and expected is not None and newest != expected:
        p.problems = [
            Problem("freshness", f"newest bar {fmt(newest)}, expected the {fmt(expected)} session")
        ]
    on_newest = [r for r in p.bad_rows if newest is not None and r["Date"] == f"{newest:%Y-%m-%d}"]
    if on_newest:
        p.problems += [
            Problem(rule, f"the newest bar {_row_text(r)}")
            for r in on_newest
            for rule in r["rule"].split(", ")
        ]
    if p.problems:
        _quarantine_day(cfg, p, day)
    # a row whose only fault is a lasting move stays (it is data); the ticker is held out
    p.bad_rows = [r for r in p.bad_rows if r["rule"] != "plausible_daily_move"]
    dropped = {r["Date"] for r in p.bad_rows}
    dates = p.merged["Date"].dt.strftime("%Y-%m-%d")
    clean = p.merged[~dates.isin(dropped)]
    # a bad revision of a stored row keeps the stored row (the vendor's new one is refused)
    kept = p.stored[p.stored["Date"].dt.strftime("%Y-%m-%d").isin(dropped)]
    clean = pd.concat([clean, kept], ignore_index=True).sort_values("Date", kind="stable")
    clean = clean.reset_index(drop=True)
    # a backfill keeps the stored future, in the merge's terms (re-based with it)
    table = pd.concat([clean, p.later], ignore_index=True).sort_values("Date", kind="stable")
    curated = store.publish_curated(cfg, p.ticker, table.reset_index(drop=True), p.revisions, day)
    if p.bad_rows:
        store.quarantine_rows(cfg, p.ticker, day, p.bad_rows)
        print(
            f"{p.ticker}: {len(p.bad_rows)} older row(s) quarantined, going on without them: "
            + "; ".join(_row_text(r) for r in p.bad_rows[:3])
        )
    seen = actions.apply_splits(clean, splits) if splits else clean
    missing = gaps.missing_sessions(seen["Date"], cfg.validation.calendar)
    summary: Validated = {
        "curated_path": str(curated),
        "rows": len(clean),
        "revisions": len(p.revisions),
        "checked": len(p.checked),
        "first_date": f"{clean['Date'].iloc[0]:%Y-%m-%d}",
        "last_date": f"{clean['Date'].iloc[-1]:%Y-%m-%d}",
        "data_docs": str(docs_dir / "index.html") if docs_dir is not None else None,
        "quarantined_rows": len(p.bad_rows),
        "quarantined": [{"Date": r["Date"], "rule": r["rule"]} for r in p.bad_rows[:20]],
        "missing_sessions": gaps.describe(missing),
        "validation": {
            "suite": SUITE_PATH.name,
            "passed": True,
            "checked": len(p.checked),
            "rows": len(clean),
        },
    }
    judge(cfg, seen, p.jumps, dropped, summary)
    return summary


def params_session(cfg: Config, day: dt.date) -> pd.Timestamp | None:
    """The session the newest bar must be for, when freshness is checked."""
    return (
        expected_session(day, cfg.validation.calendar) if cfg.validation.check_freshness else None
    )


def _row_text(r: dict[str, Any]) -> str:
    return f"{r['Date']} {r['rule']} (O {r['Open']} H {r['High']} L {r['Low']} C {r['Close']})"


def _quarantine_day(cfg: Config, p: Pending, day: dt.date) -> None:
    report = {
        "ticker": p.ticker,
        "day": day.isoformat(),
        "failures": [str(f) for f in p.problems],
        "rows": p.bad_rows,
    }
    where = store.quarantine(cfg, p.ticker, day, p.raw, report)
    raise ValidationFailed(
        f"{p.ticker} {day}: {len(p.problems)} expectation(s) failed; pull quarantined in "
        f"{where}; curated table untouched\n" + "\n".join(str(f) for f in p.problems)
    )


def run(cfg: Config, ticker: str, day: dt.date, raw_path: str) -> Validated:
    """One ticker's day (the chunk of one): its summary, or ValidationFailed / Skipped."""
    docs_dir = cfg.layout.data_docs()
    out = run_chunk(cfg, day, {ticker: raw_path}, docs_dir)[ticker]
    if isinstance(out, Exception):
        raise out
    print(f"GX Data Docs: {docs_dir / 'index.html'}")
    return out
