"""Validate: run the GX suite in expectations/ over a pull merged into the curated table.

Only a candidate table that passes is published; a failing pull is quarantined
with its report and the task fails, so nothing downstream runs on it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.config import PROJECT_ROOT, Config
from pipeline.data import store
from pipeline.data.bars import ADJUSTED, BarsError, Problem, read_bars_csv
from pipeline.data.splits import apparent_splits, split_problem, split_text
from pipeline.orchestration.carry import Validated

SUITE_PATH = PROJECT_ROOT / "expectations" / "ohlcv_bars.json"
log = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    """Raised by run(): the message lists every failed rule with example rows."""


@dataclass(frozen=True)
class Report:
    success: bool
    failures: list[Problem]
    checked: int
    docs: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return "\n".join(str(f) for f in self.failures)


def load_suite_spec(daily: bool, path: Path = SUITE_PATH) -> dict[str, Any]:
    spec = json.loads(path.read_text())
    if not daily:
        spec["expectations"] = [
            e for e in spec["expectations"] if e.get("meta", {}).get("scope") != "daily"
        ]
    return spec


def with_derived_columns(
    bars: pd.DataFrame, adjusted: bool = False, max_move: float = 1.0
) -> pd.DataFrame:
    """Row-to-row rules need columns GX can test per row, computed from each row's
    neighbours: `off_neighbours`, how far a close sits from both neighbours when it jumps
    away and back (a spike: one bad row, not a move); `abs_log_return`, |log close-to-close
    move| against the previous row that is not such a spike (so the row after a spike is
    not blamed for it); `date_step_days`, days since the previous row; and the apparent
    split ratio where the vendor gave no adjustment (an adjusted series has none: its
    factor already took the split out)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # zero prices: positive_prices says so
        splits = pd.Series(np.nan, index=bars.index) if adjusted else apparent_splits(bars)
        log_c = np.log(bars["Close"].astype("float64"))
        up, down = log_c - log_c.shift(), log_c.shift(-1) - log_c
        reverts = np.sign(up) == -np.sign(down)
        off = np.minimum(up.abs(), down.abs()).where(reverts)
        spike = off > max_move
        previous = log_c.where(~spike).ffill().shift()
        moves = (log_c - previous).abs().where(~spike)
    steps = bars["Date"].diff().dt.days
    return bars.assign(
        abs_log_return=moves, split_ratio=splits, off_neighbours=off, date_step_days=steps
    )


def expected_session(day: dt.date, calendar: str) -> pd.Timestamp:
    """The session whose bar must be the newest on `day`: the day itself, or the last
    session before it on weekends and exchange holidays."""
    import exchange_calendars as xcals

    cal = xcals.get_calendar(calendar, start="1990-01-01")
    return pd.Timestamp(cal.date_to_session(pd.Timestamp(day), direction="previous")).tz_localize(
        None
    )


def _fmt(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _describe(result: Any, frame: pd.DataFrame) -> str:
    res, kwargs = result.result or {}, result.expectation_config.kwargs
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"could not evaluate: {result.exception_info.get('exception_message')}"
    if "observed_value" in res:
        bounds = {
            k: kwargs.get(k)
            for k in ("min_value", "max_value", "column_set")
            if kwargs.get(k) is not None
        }
        what = kwargs.get("column", "table")
        bounds = {k: _fmt(v) for k, v in bounds.items()}
        return f"{what}: observed {_fmt(res['observed_value'])}, expected {bounds}"
    cols = [c for c in (kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")) if c]
    idx = [i for i in res.get("partial_unexpected_index_list") or [] if i in frame.index][:3]
    rows = [
        f"row {i} "
        + " ".join(
            f"{c}={_fmt(frame.at[i, c])}"
            for c in ["Date", *cols]
            if c != "Date" or cols != ["Date"]
        )
        for i in idx
    ]
    if cols == ["Date"]:
        rows = [f"row {i} Date={_fmt(frame.at[i, 'Date'])}" for i in idx]
    count = res.get("unexpected_count", "?")
    shown = "; ".join(rows)
    return f"{count} row(s) in {'/'.join(cols)}" + (f", e.g. {shown}" if shown else "")


def _problem(result: Any, frame: pd.DataFrame) -> Problem:
    config = result.expectation_config
    if config.meta.get("rule") == "unadjusted_split":
        return split_problem(result, frame)
    return Problem(
        config.meta.get("rule", config.type), f"{config.type} {_describe(result, frame)}"
    )


def run_suite(
    frame: pd.DataFrame,
    expectations: list[dict[str, Any]],
    params: dict[str, Any],
    docs_dir: Path | None = None,
    result_format: Literal["SUMMARY", "COMPLETE"] = "SUMMARY",
) -> list[Any]:
    """One GX checkpoint run of `expectations` over `frame` (with derived columns); with
    docs_dir, also (re)build GX Data Docs there. Returns GX's per-expectation results."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # read at import: no calls home
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations))
    batch = ctx.data_sources.add_pandas("bars").add_dataframe_asset("ohlcv")
    vdef = ctx.validation_definitions.add(
        gx.ValidationDefinition(
            name="ohlcv", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite
        )
    )
    actions: list[Any] = []
    if docs_dir is not None:
        ctx.update_data_docs_site(
            "local_site",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs"))
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="ohlcv",
            validation_definitions=[vdef],
            actions=actions,
            result_format=result_format,
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=params)
    return list(next(iter(outcome.run_results.values())).results)


SUITE_NAME = "ohlcv_bars"


def validate_bars(
    bars: pd.DataFrame,
    params: dict[str, Any],
    daily: bool,
    docs_dir: Path | None = None,
    adjusted: bool | None = None,
) -> Report:
    """Run the suite on typed bars. With docs_dir, also (re)build GX Data Docs there.
    `adjusted` (default: what the bars say of themselves) switches the split rule off."""
    if adjusted is None:
        adjusted = bool(bars.attrs.get(ADJUSTED))
    frame = with_derived_columns(bars.reset_index(drop=True), adjusted, params["max_abs_log_move"])
    results = run_suite(frame, load_suite_spec(daily)["expectations"], params, docs_dir)
    failures = [_problem(r, frame) for r in results if not r.success]
    docs = str(docs_dir / "index.html") if docs_dir is not None else None
    return Report(
        success=not failures,
        failures=failures,
        checked=len(results),
        docs=docs,
        details=[r.to_json_dict() for r in results],
    )


def suite_params(cfg: Config, day: dt.date | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "max_abs_log_move": cfg.validation.max_abs_log_move,
        "min_history_rows": cfg.validation.min_history_rows,
    }
    if day is not None:
        params["expected_session"] = expected_session(day, cfg.validation.calendar)
    return params


def validate_file(path: str | Path, cfg: Config) -> Report:
    """The `python -m pipeline validate` check: parse strictly, then the suite without freshness."""
    try:
        bars = read_bars_csv(path)
    except BarsError as exc:
        return Report(success=False, failures=exc.problems, checked=0)
    return validate_bars(bars, suite_params(cfg, None), daily=False)


class Skipped(RuntimeError):
    """A ticker that is fine as data but cannot be forecast or trained on yet: held out
    (a split-like day with no adjustment source) or too short. Its own status, not a
    failure of the day."""

    def __init__(self, status: str, reason: str, summary: Any = None):
        self.status, self.reason, self.summary = status, reason, dict(summary or {})
        super().__init__(f"{status}: {reason}")


HELD_OUT, TOO_SHORT = "held_out", "too_short"
# Judged per ticker over its whole series, not per row in the chunk's GX run
TICKER_RULES = {"columns", "types", "min_history", "freshness", "unadjusted_split"}
TABLE_TYPES = {"expect_column_values_to_be_unique", "expect_column_values_to_be_increasing"}


def row_expectations() -> list[dict[str, Any]]:
    """The suite's per-row rules: what a chunk of many tickers' new rows is checked with."""
    return [
        e
        for e in load_suite_spec(daily=False)["expectations"]
        if e["meta"].get("rule") not in TICKER_RULES and e["type"] not in TABLE_TYPES
    ]


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
        _check_rows(pending, params, docs_dir)
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
    # a move beyond plausible that does not revert is not one bad row: a level shift (an
    # unadjusted corporate action, a change of units) holds the ticker out, rows kept
    big = (derived["abs_log_return"] > params["max_abs_log_move"]).to_numpy()
    p.jumps = list(zip(derived["Date"][big], derived["abs_log_return"][big], strict=True))
    return p


def _check_rows(pending: list[Pending], params: dict[str, Any], docs_dir: Path | None) -> None:
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
        values = {c: _fmt(row[c]) for c in ("Open", "High", "Low", "Close", "Volume")}
        owner[row["ticker"]].bad_rows.append(
            {"Date": f"{row['Date']:%Y-%m-%d}", "rule": ", ".join(rules[i]), **values}
        )


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
            Problem(
                "freshness", f"newest bar {_fmt(newest)}, expected the {_fmt(expected)} session"
            )
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
    if len(apparent := split_days(seen)):
        shown = "; ".join(f"{d:%Y-%m-%d} (apparent {split_text(r)})" for d, r in apparent[:3])
        raise Skipped(
            HELD_OUT,
            f"{len(apparent)} day(s) look like a split or share dividend the prices were not "
            f"adjusted for: {shown}; held out of training and forecasting until an adjustment "
            "source covers them (source.actions_file, see docs/configuration.md)",
            summary,
        )
    jumps = [(d, m) for d, m in p.jumps if f"{d:%Y-%m-%d}" not in dropped]
    if jumps:
        shown = "; ".join(f"{d:%Y-%m-%d} (|log move| {m:.2f})" for d, m in jumps[:3])
        raise Skipped(
            HELD_OUT,
            f"{len(jumps)} day(s) moved beyond validation.max_abs_log_move and stayed there: "
            f"{shown}; held out of training and forecasting until an adjustment source "
            "covers them (source.actions_file) or the data are corrected",
            summary,
        )
    if len(clean) < cfg.validation.min_history_rows:
        raise Skipped(
            TOO_SHORT,
            f"{len(clean)} valid sessions, {cfg.validation.min_history_rows} needed "
            "(validation.min_history_rows); it joins once it has them",
            summary,
        )
    return summary


def split_days(bars: pd.DataFrame) -> list[tuple[pd.Timestamp, float]]:
    """(day, ratio) of every day in `bars` that looks like an unadjusted split."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = apparent_splits(bars.reset_index(drop=True))
    hit = ratios.notna().to_numpy()
    return list(zip(bars["Date"][hit], ratios[hit], strict=True))


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


def docs_index(docs_dir: Path) -> Path | None:
    """A page linking every chunk's GX Data Docs site under `docs_dir` (each chunk of a
    day is one GX run with its own site), or None when there are none."""
    sites = sorted(docs_dir.glob("chunk-*/index.html"), key=lambda p: int(p.parent.name[6:]))
    if not sites:
        return None
    links = "".join(
        f'<li><a href="{s.relative_to(docs_dir)}">{s.parent.name}</a></li>' for s in sites
    )
    page = docs_dir / "index.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>GX Data Docs</title>"
        "<h1>GX Data Docs: the last run's validation, one site per chunk of tickers</h1>"
        f"<ul>{links}</ul>"
    )
    return page
