"""What the day's report page shows, gathered from what the day stored.

Read only: the day's JSON report (pipeline/operations/daily.py), the forecasts table
(pipeline/monitoring/forecast.py: every forecast with its bands and, once the session
came, the realised close) and the curated bars. Per ticker the last WINDOW sessions'
closes and the bands the model gave for them; per session across tickers the realised
coverage at 80 % and 95 % and the model's 80 % interval score against HAR's on the same
forecasts. HAR is fitted on each ticker's bars before the window (pipeline.evaluation
.baselines, the backtest's HAR) and forecasts the window out of sample, with the training
drift as its location, as in the backtest. Interval scores are in % of the close.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from contextlib import closing
from typing import Any

import numpy as np
import pandas as pd

from pipeline import schedule
from pipeline.config import Config
from pipeline.data import store
from pipeline.evaluation.baselines import har_fit, har_sigma, range_variance
from pipeline.forecasting.intervals import interval_score
from pipeline.operations import daily

WINDOW = 60  # sessions of history on a fan and in the model's health
MIN_HAR_ROWS = 60  # bars before the window HAR needs to be fitted
BANDS = ("lower_80", "upper_80", "lower_95", "upper_95", "actual_close")
COLUMNS = (
    "ticker, as_of, for_date, forecast_close, naive_close, lower_80, upper_80,"
    " lower_95, upper_95, actual_close, inside_80, inside_95"
)


def gather(cfg: Config, day: dt.date) -> dict[str, Any]:
    """Everything the page shows for `day`, as plain JSON-ready values; FileNotFoundError
    when the day has no report (it has not run on this state)."""
    rep = json.loads(daily.report_path(cfg, day).read_text())
    table = stored_forecasts(cfg, day)
    by_ticker = dict(iter(table.groupby("ticker", sort=False)))
    tickers, scored = {}, []
    for ticker, row in rep["tickers"].items():
        bars = store.read_curated(cfg, ticker, until=day)
        mine = by_ticker.get(ticker, table.iloc[:0])
        fan, scores = ticker_fan(bars, mine, rep["day"])
        tickers[ticker] = {**row, "fan": fan, "vs_har": ratio(scores)}
        scored.append(scores)
    return {
        "day": rep["day"],
        "session": rep.get("session", True),
        "retrain": rep.get("retrain", {}),
        "retrain_why": schedule.why(rep.get("retrain", {})),
        "tickers": tickers,
        "health": health(pd.concat(scored) if scored else pd.DataFrame()),
    }


def stored_forecasts(cfg: Config, day: dt.date) -> pd.DataFrame:
    """Every ticker's forecasts made up to `day`, from its window's start on."""
    start = (pd.Timestamp(day) - pd.offsets.BDay(2 * WINDOW)).date().isoformat()
    path = cfg.layout.forecasts_db()
    if not path.exists():
        return pd.DataFrame(columns=[c.strip() for c in COLUMNS.split(",")])
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return pd.read_sql_query(
            f"SELECT {COLUMNS} FROM forecasts WHERE as_of <= ? AND as_of >= ? ORDER BY as_of",
            conn,
            params=(day.isoformat(), start),
        )


def ticker_fan(
    bars: pd.DataFrame, forecasts: pd.DataFrame, day: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    """A fan's data: the last WINDOW closes, the bands given for them with the realised
    close inside or outside, and the newest (unrealised) bands; and the realised
    forecasts' interval scores, the model's and HAR's."""
    recent = bars.tail(WINDOW)
    dates = recent["Date"].dt.strftime("%Y-%m-%d").tolist()
    today = forecasts["as_of"] == day
    shown = forecasts[(forecasts["for_date"].isin(dates) | today) & forecasts["lower_80"].notna()]
    fan = {
        "dates": dates,
        "closes": rounded(recent["Close"]),
        "bands": {
            "for_date": shown["for_date"].tolist(),
            **{k: rounded(shown[k]) for k in BANDS},
            **{k: flags(shown[k]) for k in ("inside_80", "inside_95")},
        },
    }
    return fan, scores_against_har(bars, forecasts, first=len(bars) - len(recent))


def scores_against_har(bars: pd.DataFrame, forecasts: pd.DataFrame, first: int) -> pd.DataFrame:
    """Per realised forecast of the window: the model's and HAR's 80 % interval scores (%
    of the close) and whether each 95 % band held; HAR fitted on the bars before `first`.
    Without enough bars before the window, HAR's score is left out (NaN)."""
    done = forecasts.dropna(subset=["actual_close", "lower_80", "upper_80"])
    at = pd.Index(bars["Date"].dt.strftime("%Y-%m-%d")).get_indexer(done["as_of"])
    done, at = done[at >= first], at[at >= first]  # forecasts made inside the window
    if done.empty:
        return pd.DataFrame(columns=["for_date", "model_is", "har_is", "inside_80", "inside_95"])
    last, actual = done["naive_close"].to_numpy(float), done["actual_close"].to_numpy(float)
    model = interval_score(
        actual, done["lower_80"].to_numpy(float), done["upper_80"].to_numpy(float), 0.8
    )
    har = np.full(len(done), np.nan)
    if first >= MIN_HAR_ROWS:  # (too few usable bars before the window: no HAR to compare)
        with contextlib.suppress(ValueError):
            har = har_interval_score(bars, first, at, last, actual)
    return pd.DataFrame(
        {
            "for_date": done["for_date"].to_numpy(),
            "model_is": 100 * model / last,
            "har_is": 100 * har / last,
            "inside_80": done["inside_80"].to_numpy(float),
            "inside_95": done["inside_95"].to_numpy(float),
        }
    )


def har_interval_score(
    bars: pd.DataFrame, first: int, at: np.ndarray, last: np.ndarray, actual: np.ndarray
) -> np.ndarray:
    """HAR's 80 % interval score at the bars `at`, fitted on the bars before `first`."""
    o, h, lo, c = (bars[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close"))
    v = range_variance(o, h, lo, c)
    r_next = np.append(np.diff(np.log(c)), np.nan)
    fit = har_fit(v, r_next, np.arange(first - 1))  # their next return known before the window
    drift = float(np.nanmean(r_next[: first - 1]))
    half = fit.quantile(0.8) * har_sigma(fit, v)[at]
    return interval_score(actual, last * np.exp(drift - half), last * np.exp(drift + half), 0.8)


def ratio(scores: pd.DataFrame) -> float | None:
    """The model's mean 80 % interval score over HAR's on the same realised forecasts
    (below 1: the model's bands were better), or None before any."""
    both = scores.dropna(subset=["model_is", "har_is"])
    if both.empty:
        return None
    return round(float(both["model_is"].mean() / both["har_is"].mean()), 4)


def health(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Per realised session of the last WINDOW, across tickers: coverage at 80 % and 95 %,
    the model's and HAR's mean 80 % interval scores (on the forecasts both have)."""
    if scores.empty:
        return []
    out = []
    for day, g in scores.groupby("for_date", sort=True):
        both = g.dropna(subset=["har_is"])
        out.append(
            {
                "day": day,
                "tickers": len(g),
                "coverage_80": round(float(g["inside_80"].mean()), 4),
                "coverage_95": round(float(g["inside_95"].mean()), 4),
                "model_is": round(float(both["model_is"].mean()), 4) if len(both) else None,
                "har_is": round(float(both["har_is"].mean()), 4) if len(both) else None,
            }
        )
    return out[-WINDOW:]


def rounded(values: pd.Series, digits: int = 4) -> list[float | None]:
    """Plain floats (None for a missing value: the page's data is strict JSON)."""
    return [None if pd.isna(v) else round(float(v), digits) for v in values]


def flags(values: pd.Series) -> list[int | None]:
    return [None if pd.isna(v) else int(v) for v in values]
