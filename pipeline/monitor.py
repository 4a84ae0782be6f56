"""Daily forecasts and their realised error.

After promotion, `forecast` writes each ticker's next-session forecast (with the
model version that made it) to a SQLite table under the state directory. The
next run's `monitor` fills in what happened, against the naive forecast made on
the same day, logs both to MLflow, and keeps a rolling figure. When production
has lost to naive over `monitoring.window_days` realised days it says so loudly
and tags the registered model, so the next gate lets any naive-beating model in.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import registry, store, tracking
from pipeline.config import Config

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS forecasts (
    ticker TEXT NOT NULL, as_of TEXT NOT NULL, for_date TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    forecast_close REAL NOT NULL, naive_close REAL NOT NULL, created_at TEXT NOT NULL,
    actual_close REAL, model_abs_error REAL, naive_abs_error REAL,
    PRIMARY KEY (ticker, as_of)
)"""


def db_path(cfg: Config) -> Path:
    return cfg.state / "forecasts.sqlite"


def _connect(cfg: Config) -> sqlite3.Connection:
    db_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path(cfg))
    conn.execute(SCHEMA)
    return conn


def read_forecasts(cfg: Config, ticker: str) -> pd.DataFrame:
    with closing(_connect(cfg)) as conn:
        return pd.read_sql_query(
            "SELECT * FROM forecasts WHERE ticker = ? ORDER BY as_of", conn, params=(ticker,)
        )


def rolling(realised: pd.DataFrame, window: int) -> dict[str, Any]:
    """Model vs naive MAE over the last `window` realised forecasts."""
    recent = realised.dropna(subset=["actual_close"]).tail(window)
    out = {
        "days": len(recent),
        "model_mae": float(recent["model_abs_error"].mean()),
        "naive_mae": float(recent["naive_abs_error"].mean()),
    }
    out["worse_than_naive"] = len(recent) >= window and out["model_mae"] > out["naive_mae"]
    return out


def forecast(cfg: Config, ticker: str, day: dt.date) -> dict[str, Any]:
    """Write production's forecast for the session after `day`; idempotent per day."""
    import mlflow

    prod = registry.production_version(cfg, ticker)
    if prod is None:
        log.warning("%s: no production model, no forecast written", ticker)
        return {"forecast": None}
    bars = store.read_curated(cfg, ticker, until=day).tail(cfg.serving.max_rows)
    model = mlflow.pyfunc.load_model(f"models:/{prod.name}/{prod.version}")
    out = model.predict(bars.assign(Date=bars["Date"].dt.strftime("%Y-%m-%d"))).iloc[0]
    row = {
        "ticker": ticker,
        "as_of": out["as_of"],
        "for_date": out["for_date"],
        "model_name": prod.name,
        "model_version": str(prod.version),
        "forecast_close": float(out["forecast_close"]),
        "naive_close": float(out["last_close"]),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with closing(_connect(cfg)) as conn, conn:
        conn.execute(
            "INSERT OR REPLACE INTO forecasts (ticker, as_of, for_date, model_name, model_version,"
            " forecast_close, naive_close, created_at) VALUES (:ticker, :as_of, :for_date,"
            " :model_name, :model_version, :forecast_close, :naive_close, :created_at)",
            row,
        )
    print(
        f"{ticker}: forecast for {row['for_date']} = {row['forecast_close']:.2f} "
        f"(v{row['model_version']}, naive {row['naive_close']:.2f}) -> {db_path(cfg)}"
    )
    return {"forecast": row}


def realise(cfg: Config, ticker: str, bars: pd.DataFrame) -> int:
    """Fill in actual closes and errors for forecasts whose day has now been seen."""
    closes = dict(zip(bars["Date"].dt.strftime("%Y-%m-%d"), bars["Close"], strict=True))
    with closing(_connect(cfg)) as conn, conn:
        pending = conn.execute(
            "SELECT as_of, for_date, forecast_close, naive_close FROM "
            "forecasts WHERE ticker = ? AND actual_close IS NULL",
            (ticker,),
        ).fetchall()
        done = 0
        for as_of, for_date, fc, naive in pending:
            if for_date in closes:
                actual = float(closes[for_date])
                conn.execute(
                    "UPDATE forecasts SET actual_close = ?, model_abs_error = ?, "
                    "naive_abs_error = ? WHERE ticker = ? AND as_of = ?",
                    (actual, abs(fc - actual), abs(naive - actual), ticker, as_of),
                )
                done += 1
    return done


def run(cfg: Config, ticker: str, day: dt.date) -> dict[str, Any]:
    """Realise pending forecasts, log them, and flag production if it keeps losing to naive."""
    realise(cfg, ticker, store.read_curated(cfg, ticker, until=day))
    table = read_forecasts(cfg, ticker).dropna(subset=["actual_close"])
    if table.empty:
        return {"monitoring": {"days": 0}}
    summary = rolling(table, cfg.monitoring.window_days)
    latest = table.iloc[-1]
    mc = tracking.client(cfg)
    exp = tracking.experiment_id(cfg, f"{cfg.tracking.experiment}_monitoring")
    run_ = mc.create_run(
        exp,
        run_name=f"{ticker} {day}",
        tags={
            "ticker": ticker,
            "day": day.isoformat(),
            "for_date": latest["for_date"],
            "model_version": latest["model_version"],
        },
    )
    metrics = {
        "realised_model_abs_error": latest["model_abs_error"],
        "realised_naive_abs_error": latest["naive_abs_error"],
        "rolling_model_mae": summary["model_mae"],
        "rolling_naive_mae": summary["naive_mae"],
        "rolling_days": summary["days"],
    }
    for key, value in metrics.items():
        mc.log_metric(run_.info.run_id, key, float(value))
    mc.set_terminated(run_.info.run_id)
    name = registry.model_name(cfg, ticker)
    if summary["worse_than_naive"]:
        msg = (
            f"ALERT {name}: production worse than naive over the last {summary['days']} "
            f"days (MAE {summary['model_mae']:.3f} vs {summary['naive_mae']:.3f}); the next "
            "training will replace it with any model that beats naive"
        )
        log.error(msg)
        print(msg)
        mc.set_registered_model_tag(name, registry.BEATABLE_TAG, "true")
    elif registry.is_production_beatable(cfg, ticker):
        mc.delete_registered_model_tag(name, registry.BEATABLE_TAG)
    return {"monitoring": summary}
