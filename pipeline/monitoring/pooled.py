"""The universe model judged as one model: on the cross-section of its stocks, per session.

Each stock's monitor (monitor.py) tests production on that stock alone, at 5 %. For the
universe's one model that is hundreds of tests a day: all five of five days worse than
naive has p = 1/32, so about 12 of 388 stocks raise that alarm on any day by chance alone,
and the universe model was refit about weekly on them (docs/benchmarks.md, the S&P 500
replay). Adjusting those tests for their number (a false-discovery rate) asks the wrong
question, which stocks lose, and with five days each it can hardly ever answer it. The
question is whether the one model loses, so it is judged as the gate judges a universe
(evaluation's panel tests): per realised session, the 10 % trimmed mean over the stocks
of its absolute error's excess over naive's (in % of the close; trimmed, so one blown-up
forecast cannot speak for all) and the share of closes inside its 80 % bands. The stocks
move together on a market day, so the session, not the stock-day, is the unit. Only the
last 2 x `monitoring.window_days` business days' sessions count (a version rolled back to
is not judged on its months-old losses), and only sessions with at least half the most
stocks any of them has (a chunk whose monitor failed leaves a session that is not the
universe's). Over the last `monitoring.window_days` of them:

- losing: a one-sided sign test on the sessions it was worse (5 %; over five, all five),
  as a single stock's model is judged;
- coverage drift: the mean coverage outside `registry.coverage_tolerance` of 80 %, and a
  t-test saying so (5 %) whose variance is the sessions' own or, where larger, a
  binomial's over the stock-sessions (a few stocks a session give lumpy coverages that
  would otherwise look too sure). It treats sessions as independent; a calm week can
  cover above 80 % on every stock at once.
"""

from __future__ import annotations

import datetime as dt
from contextlib import closing
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.monitoring.forecast import connect

LEVEL = 0.05  # each test's level, as the stocks' own
TRIM = 0.1  # of each tail of a session's stocks, before their mean


def sessions(cfg: Config, day: dt.date, name: str, version: str) -> pd.DataFrame:
    """Per realised session up to `day` of `name` v`version`'s forecasts: the stocks, their
    mean excess absolute error over naive's (% of the close) and their 80 % coverage."""
    from scipy.stats import trim_mean

    since = (pd.Timestamp(day) - pd.offsets.BDay(2 * cfg.monitoring.window_days)).date()
    with closing(connect(cfg)) as conn:
        rows = pd.read_sql_query(
            "SELECT for_date, model_abs_error, naive_abs_error, naive_close, inside_80"
            " FROM forecasts WHERE model_name = ? AND model_version = ?"
            " AND actual_close IS NOT NULL AND for_date <= ? AND for_date > ?",
            conn,
            params=(name, version, day.isoformat(), since.isoformat()),
        )
    rows["excess"] = 100 * (rows["model_abs_error"] - rows["naive_abs_error"]) / rows["naive_close"]
    per = rows.groupby("for_date", sort=True).agg(
        stocks=("excess", "size"),
        excess=("excess", lambda x: float(trim_mean(x, TRIM))),
        coverage_80=("inside_80", "mean"),
    )
    per = per[per["stocks"] * 2 >= per["stocks"].max()] if len(per) else per
    return per.reset_index()


def judge(per: pd.DataFrame, window: int, tolerance: float) -> dict[str, Any]:
    """The universe's alarms over the last `window` sessions of `per` (`sessions`)."""
    from scipy import stats

    recent = per.tail(window)
    n = len(recent)
    worse = int((recent["excess"] > 0).sum())
    p = float(stats.binomtest(worse, n, 0.5, alternative="greater").pvalue) if n else 1.0
    out: dict[str, Any] = {
        "sessions": n,
        "last_session": str(recent["for_date"].iloc[-1]) if n else None,
        "stocks": int(recent["stocks"].min()) if n else 0,
        "excess_pct": round(float(recent["excess"].mean()), 6) if n else None,
        "worse_sessions": worse,
        "worse_pvalue": p,
        "losing": n >= window and p < LEVEL,
    }
    with_bands = recent.dropna(subset=["coverage_80"])
    covered = with_bands["coverage_80"].to_numpy(dtype=float)
    if len(covered) < max(window, 2):  # a version without intervals, or too few sessions
        return {**out, "coverage_drift": False}
    mean, k = float(covered.mean()), len(covered)
    binomial = 0.8 * 0.2 / float(with_bands["stocks"].sum())  # the mean's, stock-sessions
    se = float(np.sqrt(max(covered.var(ddof=1) / k, binomial)))
    p_cover = float(2 * stats.t.sf(abs(mean - 0.8) / se, df=k - 1))
    drift = abs(mean - 0.8) > tolerance and p_cover < LEVEL
    return {**out, "coverage_80": mean, "coverage_pvalue": p_cover, "coverage_drift": drift}
