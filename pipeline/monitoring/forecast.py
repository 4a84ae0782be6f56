"""Forecast: the production model's forecast for the next session, kept in a table.

Each run day writes one row per ticker (with the model version that made it) to
the SQLite table `forecasts` under the state directory; the next run's monitor
step fills in what happened (pipeline/monitoring/monitor.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from contextlib import closing
from typing import Any

import pandas as pd

from pipeline.carry import Forecasted
from pipeline.config import Config
from pipeline.data import store
from pipeline.layout import version_uri
from pipeline.lifecycle import registry

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS forecasts (
    ticker TEXT NOT NULL, as_of TEXT NOT NULL, for_date TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    forecast_close REAL NOT NULL, naive_close REAL NOT NULL, created_at TEXT NOT NULL,
    actual_close REAL, model_abs_error REAL, naive_abs_error REAL,
    PRIMARY KEY (ticker, as_of)
)"""
# Added with the distributional head; a table from before gets them on first connect.
INTERVAL_COLUMNS = {
    "lower_80": "REAL",
    "upper_80": "REAL",
    "lower_95": "REAL",
    "upper_95": "REAL",
    "inside_80": "INTEGER",
    "inside_95": "INTEGER",
}


def connect(cfg: Config) -> sqlite3.Connection:
    path = cfg.layout.forecasts_db()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(forecasts)")}
    for name, kind in INTERVAL_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE forecasts ADD COLUMN {name} {kind}")
    return conn


def read_forecasts(cfg: Config, ticker: str) -> pd.DataFrame:
    with closing(connect(cfg)) as conn:
        return pd.read_sql_query(
            "SELECT * FROM forecasts WHERE ticker = ? ORDER BY as_of", conn, params=(ticker,)
        )


def forecast_row(ticker: str, name: str, version: str, answer: pd.Series) -> dict[str, Any]:
    """A served answer as a row of the table; naive (tomorrow = today) kept beside it."""
    return {
        "ticker": ticker,
        "as_of": answer["as_of"],
        "for_date": answer["for_date"],
        "model_name": name,
        "model_version": version,
        "forecast_close": float(answer["forecast_close"]),
        "naive_close": float(answer["last_close"]),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **{k: _number(answer.get(k)) for k in ("lower_80", "upper_80", "lower_95", "upper_95")},
    }


def _number(value: Any) -> float | None:
    """A float, or None for a version without intervals."""
    return None if value is None or pd.isna(value) else float(value)


def write(cfg: Config, row: dict[str, Any]) -> None:
    write_many(cfg, [row])


def write_many(cfg: Config, rows: list[dict[str, Any]]) -> None:
    """Insert or replace, in one transaction: a rerun of the same day overwrites its rows."""
    blank = dict.fromkeys(("lower_80", "upper_80", "lower_95", "upper_95"))
    with closing(connect(cfg)) as conn, conn:
        conn.executemany(
            "INSERT OR REPLACE INTO forecasts (ticker, as_of, for_date, model_name, model_version,"
            " forecast_close, naive_close, created_at, lower_80, upper_80, lower_95, upper_95)"
            " VALUES (:ticker, :as_of, :for_date, :model_name, :model_version, :forecast_close,"
            " :naive_close, :created_at, :lower_80, :upper_80, :lower_95, :upper_95)",
            [{**blank, **row} for row in rows],
        )


def run_many(cfg: Config, tickers: list[str], day: dt.date) -> dict[str, Forecasted | Exception]:
    """Production's forecast for the session after `day`, for many tickers: each model is
    looked up and loaded once, and the rows are written in one transaction; idempotent
    per day. A ticker whose forecast fails is returned as its exception."""
    import mlflow

    prods: dict[str, Any] = {}
    models: dict[tuple[str, str], Any] = {}
    reads: dict[tuple[str, str], int] = {}  # the bars each model reads
    out: dict[str, Forecasted | Exception] = {}
    rows = []
    for ticker in tickers:
        # the registry and the model store are the chunk's: their errors go up, and the
        # task's retries take them (a store restarting); a ticker's own data is its own
        name = registry.model_name(cfg, ticker)
        if name not in prods:
            prods[name] = registry.production_version(cfg, ticker)
        if (prod := prods[name]) is None:
            log.warning("%s: no production model, no forecast written", ticker)
            out[ticker] = {"forecast": None}
            continue
        key = (prod.name, str(prod.version))
        if key not in models:
            models[key] = mlflow.pyfunc.load_model(version_uri(*key))
            reads[key] = models[key].unwrap_python_model().needed_rows
        try:
            bars = store.read_adjusted(cfg, ticker, until=day).tail(cfg.serving.max_rows)
            gap_in_window(bars.tail(reads[key]), cfg.validation.calendar)
            dated = bars.assign(Date=bars["Date"].dt.strftime("%Y-%m-%d"))
            row = forecast_row(ticker, *key, models[key].predict(dated).iloc[0])
            rows.append(row)
            out[ticker] = {"forecast": row}
            print(describe(cfg, row))
        except Exception as exc:  # one ticker's problem is its own
            out[ticker] = exc
    if rows:
        write_many(cfg, rows)
    return out


def gap_in_window(bars: pd.DataFrame, calendar: str) -> None:
    """Hold a ticker's forecast back for the day when a session is missing among the bars
    the model reads: it would take the move over the gap for one session's return."""
    from pipeline.data import gaps
    from pipeline.data.rules import HELD_OUT, Skipped

    cut = gaps.breaks(bars["Date"].to_numpy(), calendar)
    if cut[1:].any():  # the first row's own move is not an input
        day = bars["Date"].to_numpy()[1:][cut[1:]][-1]
        raise Skipped(
            HELD_OUT,
            f"a session is missing before {pd.Timestamp(day):%Y-%m-%d}, inside the "
            f"{len(bars)} bars the model reads: not forecast until that gap leaves them",
        )


def describe(cfg: Config, row: dict[str, Any]) -> str:
    band = (
        f", 80 % in [{row['lower_80']:.2f}, {row['upper_80']:.2f}]"
        if row["lower_80"] is not None
        else ""
    )
    return (
        f"{row['ticker']}: forecast for {row['for_date']} = {row['forecast_close']:.2f}{band} "
        f"(v{row['model_version']}, naive {row['naive_close']:.2f}) -> {cfg.layout.forecasts_db()}"
    )


def run(cfg: Config, ticker: str, day: dt.date) -> Forecasted:
    """Write production's forecast for the session after `day`; idempotent per day."""
    out = run_many(cfg, [ticker], day)[ticker]
    if isinstance(out, Exception):
        raise out
    return out
