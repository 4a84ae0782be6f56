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
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import PROJECT_ROOT, Config
from pipeline.data import store
from pipeline.data.bars import ADJUSTED, BarsError, Problem, read_bars_csv
from pipeline.data.splits import apparent_splits, split_problem
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


def with_derived_columns(bars: pd.DataFrame, adjusted: bool = False) -> pd.DataFrame:
    """Row-to-row rules need columns GX can test per row: |log close-to-close move|, and the
    apparent split ratio where the vendor gave no adjustment (an adjusted series has
    none: its factor already took the split out)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # zero prices: positive_prices says so
        splits = pd.Series(np.nan, index=bars.index) if adjusted else apparent_splits(bars)
        moves = np.log(bars["Close"] / bars["Close"].shift()).abs()
    return bars.assign(abs_log_return=moves, split_ratio=splits)


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


def validate_bars(
    bars: pd.DataFrame,
    params: dict[str, Any],
    daily: bool,
    docs_dir: Path | None = None,
    adjusted: bool | None = None,
) -> Report:
    """Run the suite on typed bars. With docs_dir, also (re)build GX Data Docs there.
    `adjusted` (default: what the bars say of themselves) switches the split rule off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # read at import: no calls home
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    if adjusted is None:
        adjusted = bool(bars.attrs.get(ADJUSTED))
    frame = with_derived_columns(bars.reset_index(drop=True), adjusted)
    spec = load_suite_spec(daily)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = ctx.suites.add(
        gx.ExpectationSuite(name=spec["name"], expectations=spec["expectations"])
    )
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
            name="ohlcv", validation_definitions=[vdef], actions=actions, result_format="SUMMARY"
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=params)
    result = next(iter(outcome.run_results.values()))
    failures = [_problem(r, frame) for r in result.results if not r.success]
    docs = str(docs_dir / "index.html") if docs_dir is not None else None
    return Report(
        success=not failures,
        failures=failures,
        checked=len(result.results),
        docs=docs,
        details=[r.to_json_dict() for r in result.results],
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


def _check(
    cfg: Config, ticker: str, day: dt.date, raw: Path, daily: bool, docs_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Report]:
    """The stored table merged with the pull, what a run on `day` sees of it, the verdict."""
    try:
        pull = read_bars_csv(raw)
    except BarsError as exc:
        empty = pd.DataFrame()
        return empty, empty, empty, Report(success=False, failures=exc.problems, checked=0)
    merged, revisions = store.merge_bars(store.read_curated(cfg, ticker), pull)
    # Judge what a run on `day` sees: a backfill of an earlier day after later days
    # were stored must not fail freshness on bars from its future.
    seen = merged[merged["Date"] <= pd.Timestamp(day)].reset_index(drop=True)
    params = suite_params(cfg, day if daily else None)
    report = validate_bars(seen, params, daily, docs_dir, bool(pull.attrs.get(ADJUSTED)))
    return merged, revisions, seen, report


def run(cfg: Config, ticker: str, day: dt.date, raw_path: str) -> Validated:
    """Validate curated+pull; publish on success, quarantine and raise on failure."""
    daily = cfg.validation.check_freshness
    docs_dir = cfg.layout.data_docs()
    raw = Path(raw_path)
    with store.curated_lock(cfg, ticker):  # read, merge and replace: one writer at a time
        merged, revisions, seen, report = _check(cfg, ticker, day, raw, daily, docs_dir)
        if report.success:
            curated = store.publish_curated(cfg, ticker, merged, revisions, day)
    if report.docs:
        log.info("GX Data Docs: %s", report.docs)
        print(f"GX Data Docs: {report.docs}")
    if not report.success:
        where = store.quarantine(
            cfg,
            ticker,
            day,
            raw,
            {
                "ticker": ticker,
                "day": day.isoformat(),
                "failures": [str(f) for f in report.failures],
                "results": report.details,
            },
        )
        raise ValidationFailed(
            f"{ticker} {day}: {len(report.failures)} expectation(s) failed; pull quarantined in "
            f"{where}; curated table untouched\n{report.summary()}"
        )
    return {
        "curated_path": str(curated),
        "rows": len(seen),
        "revisions": len(revisions),
        "checked": report.checked,
        "first_date": f"{seen['Date'].iloc[0]:%Y-%m-%d}",
        "last_date": f"{seen['Date'].iloc[-1]:%Y-%m-%d}",
        "data_docs": report.docs,
        # what the model's run and registered version carry as their validation evidence
        "validation": {
            "suite": SUITE_PATH.name,
            "passed": True,
            "checked": report.checked,
            "rows": len(seen),
        },
    }
