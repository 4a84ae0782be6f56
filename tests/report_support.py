"""A state with 70 sessions of stored forecasts, for the report page's tests.

Real curated bars (the embedded four stocks, up to DAY), forecasts written and realised
by the pipeline's own code (monitoring.forecast, monitoring.monitor), and the day's
JSON report: AAPL, GOOG and IBM forecast, MSFT's day quarantined with a quarantined row.
GOOG's bands are exactly HAR's (the page's HAR: fitted on the bars before its 60-session
window), so its score against HAR is 1; IBM's are twice as wide as HAR's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, throwaway_config
from pipeline.data import store
from pipeline.data.bars import read_bars_csv
from pipeline.data.ingest import sample_path
from pipeline.evaluation.baselines import har_fit, har_sigma, range_variance
from pipeline.monitoring import forecast, monitor
from pipeline.operations import daily
from pipeline.reporting.page_data import WINDOW

DAY = dt.date(2013, 3, 1)
TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
SESSIONS = 70  # forecasts made on the last 70 sessions up to DAY
NEXT_SESSION = {"2013-03-01": "2013-03-04", "2018-02-07": "2018-02-08"}


def har_bands(bars: pd.DataFrame, level: float) -> tuple[np.ndarray, np.ndarray]:
    """HAR's `level` bands at every bar, fitted as the page fits it (bars before the window)."""
    first = len(bars) - WINDOW
    o, h, lo, c = (bars[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close"))
    v = range_variance(o, h, lo, c)
    r_next = np.append(np.diff(np.log(c)), np.nan)
    fit = har_fit(v, r_next, np.arange(first - 1))
    drift = float(np.nanmean(r_next[: first - 1]))
    half = fit.quantile(level) * har_sigma(fit, v)
    return c * np.exp(drift - half), c * np.exp(drift + half)


def forecasts_for(ticker: str, bars: pd.DataFrame, widen: float) -> list[dict[str, object]]:
    """SESSIONS forecasts of `ticker` at its last closes: HAR's bands, `widen` times as wide."""
    rows = []
    close = bars["Close"].to_numpy(dtype="float64")
    (lo80, hi80), (lo95, hi95) = har_bands(bars, 0.8), har_bands(bars, 0.95)
    dates = bars["Date"].dt.strftime("%Y-%m-%d").tolist()
    for i in range(len(bars) - SESSIONS, len(bars)):
        mid80, mid95 = (lo80[i] + hi80[i]) / 2, (lo95[i] + hi95[i]) / 2
        rows.append(
            {
                "ticker": ticker,
                "as_of": dates[i],
                "for_date": dates[i + 1] if i + 1 < len(dates) else NEXT_SESSION.get(dates[i], ""),
                "model_name": "price_lstm_universe",
                "model_version": "3",
                "forecast_close": float(close[i]),
                "naive_close": float(close[i]),
                "created_at": f"{dates[-1]}T22:00:00",
                "lower_80": mid80 - widen * (mid80 - lo80[i]),
                "upper_80": mid80 + widen * (hi80[i] - mid80),
                "lower_95": mid95 - widen * (mid95 - lo95[i]),
                "upper_95": mid95 + widen * (hi95[i] - mid95),
            }
        )
    return rows


def report_state(
    root: Path, tickers_: tuple[str, ...] = TICKERS, universe: str = "default", day: dt.date = DAY
) -> tuple[Config, dict[str, object]]:
    """The state (see the module docstring) and the day's JSON report; bench.report_page
    builds the same for the S&P 500's stocks (universe sp500)."""
    cfg = throwaway_config(root)
    tickers: dict[str, dict[str, object]] = {}
    for ticker in tickers_:
        bars = read_bars_csv(sample_path(ticker, universe))
        bars = bars[bars["Date"] <= pd.Timestamp(day)].dropna().reset_index(drop=True)
        if len(bars) < SESSIONS + WINDOW + 30:
            continue  # listed too late for a fitted HAR
        store.publish_curated(cfg, ticker, bars, bars.iloc[:0], day)
        if ticker == "MSFT":
            tickers[ticker] = quarantined_entry()
            continue
        rows = forecasts_for(ticker, bars, widen={"IBM": 2.0}.get(ticker, 1.0))
        forecast.write_many(cfg, rows)
        monitor.realise(cfg, ticker, bars)
        today = rows[-1]
        tickers[ticker] = {
            "status": "forecast",
            "error": None,
            "last_close": today["naive_close"],
            "for_date": today["for_date"],
            "forecast": today["forecast_close"],
            **{k: today[k] for k in ("lower_80", "upper_80", "lower_95", "upper_95")},
            "model_version": "3",
            "forecaster": "LSTM",
            "alerts": ["coverage_drift"] if ticker == "AAPL" else [],
            "drift_outside_max": 0.0,
            "recent_ratio": 0.98,
            "quarantined_rows": 0,
            "quarantined": [],
            "missing_sessions": 0,
        }
    rep: dict[str, object] = {
        "day": day.isoformat(),
        "tickers": tickers,
        "retrain": {"AAPL": ["coverage_drift"]},
    }
    daily.write(cfg, rep)
    return cfg, rep


def quarantined_entry() -> dict[str, object]:
    return {
        "status": "quarantined",
        "error": "validation: high_is_highest (High 1.0 below Low 27.5)",
        **dict.fromkeys(("last_close", "for_date", "forecast", "lower_80", "upper_80")),
        **dict.fromkeys(("lower_95", "upper_95", "model_version", "forecaster")),
        "alerts": [],
        "drift_outside_max": None,
        "recent_ratio": None,
        "quarantined_rows": 1,
        "quarantined": [{"Date": "2013-01-15", "rule": "open_in_range", "Open": 99.0}],
        "missing_sessions": 0,
    }
