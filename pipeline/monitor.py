"""Monitor: the realised error of earlier forecasts, against naive on the same days.

The forecast step (pipeline/forecast.py) writes each day's next-session forecast;
a later run's monitor step fills in what happened, logs model and naive error to
MLflow, and keeps a rolling figure. When production has lost to naive over
`monitoring.window_days` realised days it says so loudly and tags the registered
model, so the next gate lets any naive-beating model in.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import closing
from typing import Any

import pandas as pd

from pipeline import registry, store, tracking
from pipeline.carry import Monitored
from pipeline.config import Config
from pipeline.forecast import connect, read_forecasts

log = logging.getLogger(__name__)


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


def realise(cfg: Config, ticker: str, bars: pd.DataFrame) -> int:
    """Fill in actual closes and errors for forecasts whose day has now been seen."""
    closes = dict(zip(bars["Date"].dt.strftime("%Y-%m-%d"), bars["Close"], strict=True))
    with closing(connect(cfg)) as conn, conn:
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


def run(cfg: Config, ticker: str, day: dt.date) -> Monitored:
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
