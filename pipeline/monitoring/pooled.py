"""The universe model judged as one model: on the cross-section of its stocks, per session.

Each stock's monitor (monitor.py) tests production on that stock alone, at 5 %. For the
universe's one model that is hundreds of tests a day: all five of five days worse than
naive has p = 1/32, so about 12 of 388 stocks raise that alarm on any day by chance alone,
and the universe model was refit about weekly on them (docs/benchmarks.md, the S&P 500
replay). Adjusting those tests for their number (a false-discovery rate) asks the wrong
question, which stocks lose, and with five days each it can hardly ever answer it. The
question is whether the one model loses, so it is judged as the gate judges a universe
(evaluation's panel tests): per realised session, the mean over the stocks of its
absolute error's excess over naive's (in % of the close) and the share of closes inside
its 80 % bands. The stocks move together on a market day, so the session, not the
stock-day, is the unit. Over the last `monitoring.window_days` sessions:

- losing: a one-sided sign test on the sessions it was worse on average (5 %; over five
  sessions, all five), as a single stock's model is judged;
- coverage drift: the mean coverage outside `registry.coverage_tolerance` of 80 % and a
  one-sample t-test on the sessions' coverages saying so (5 %).
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


def sessions(cfg: Config, day: dt.date, name: str, version: str) -> pd.DataFrame:
    """Per realised session up to `day` of `name` v`version`'s forecasts: the stocks, their
    mean excess absolute error over naive's (% of the close) and their 80 % coverage."""
    with closing(connect(cfg)) as conn:
        rows = pd.read_sql_query(
            "SELECT for_date, model_abs_error, naive_abs_error, naive_close, inside_80"
            " FROM forecasts WHERE model_name = ? AND model_version = ?"
            " AND actual_close IS NOT NULL AND for_date <= ?",
            conn,
            params=(name, version, day.isoformat()),
        )
    rows["excess"] = 100 * (rows["model_abs_error"] - rows["naive_abs_error"]) / rows["naive_close"]
    per = rows.groupby("for_date", sort=True).agg(
        stocks=("excess", "size"), excess=("excess", "mean"), coverage_80=("inside_80", "mean")
    )
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
        "stocks": int(recent["stocks"].max()) if n else 0,
        "excess_pct": round(float(recent["excess"].mean()), 6) if n else None,
        "worse_sessions": worse,
        "worse_pvalue": p,
        "losing": n >= window and p < LEVEL,
    }
    covered = recent["coverage_80"].dropna().to_numpy(dtype=float)
    if len(covered) < window:
        return {**out, "coverage_drift": False}
    mean = float(covered.mean())
    if np.ptp(covered) == 0:  # every session the same: no spread for a t-test to weigh
        p_cover = 0.0 if mean != 0.8 else 1.0
    else:
        p_cover = float(stats.ttest_1samp(covered, 0.8).pvalue)
    drift = abs(mean - 0.8) > tolerance and p_cover < LEVEL
    return {**out, "coverage_80": mean, "coverage_pvalue": p_cover, "coverage_drift": drift}
