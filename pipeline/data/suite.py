"""The GX suite in expectations/: its rules, the columns they need, one checkpoint run.

One frame, the whole suite: `python -m pipeline validate` and the backtest's check of a
file. The daily step (pipeline/data/validate.py) runs the suite's per-row rules over a
chunk of tickers' new rows with the same `run_suite`.
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
from pipeline.data.bars import ADJUSTED, BarsError, Problem, read_bars_csv
from pipeline.data.splits import apparent_splits, split_problem

SUITE_PATH = PROJECT_ROOT / "expectations" / "ohlcv_bars.json"


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


def fmt(value: Any) -> str:
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
        bounds = {k: fmt(v) for k, v in bounds.items()}
        return f"{what}: observed {fmt(res['observed_value'])}, expected {bounds}"
    cols = [c for c in (kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")) if c]
    idx = [i for i in res.get("partial_unexpected_index_list") or [] if i in frame.index][:3]
    rows = [
        f"row {i} "
        + " ".join(
            f"{c}={fmt(frame.at[i, c])}" for c in ["Date", *cols] if c != "Date" or cols != ["Date"]
        )
        for i in idx
    ]
    if cols == ["Date"]:
        rows = [f"row {i} Date={fmt(frame.at[i, 'Date'])}" for i in idx]
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
