"""Interval variants scored on one walk-forward backtest's sessions, chosen on early days.

    .venv/bin/python -m bench.backtest_variants state/backtests/<run id>/sessions.csv \
        [--report-from 2017-01-03] [--lookback 250]

A backtest keeps, per ticker-session, the model's intervals as trained (`model_raw`) and
HAR's; this scores, on the same sessions, what can be made of them without training
again: the adaptive conformal widths at several steps (0: none), and an equal-weight
combination of the model's and HAR's intervals (mid-points averaged, half-widths
combined geometrically in log price) with the same widths. Each variant is scored as
the backtest scores the model (pooled interval scores, panel DM against HAR, ticker
wins, Kupiec per ticker-year), on the days before `--report-from` (where a variant is
chosen: the lowest 80 % interval score) and from it (the final figure, reported for
every variant so nothing is hidden). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation import backtest_scores
from pipeline.forecasting import conformal
from pipeline.forecasting.intervals import LEVELS

STEPS = (0.0, 0.005, 0.01, 0.02, 0.05)


def widened(
    days: pd.DataFrame, lower: str, upper: str, level: float, step: float, lookback: int
) -> tuple[np.ndarray, np.ndarray]:
    """The intervals `lower`/`upper` with the adaptive widths, per ticker in time order."""
    if step <= 0:
        return days[lower].to_numpy(), days[upper].to_numpy()
    parts = [
        conformal.widen(g.assign(lower=g[lower], upper=g[upper]), level, step, lookback)
        for _, g in days.groupby("ticker", sort=False)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def combined(days: pd.DataFrame, pct: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw and HAR's intervals combined: mid-points averaged, half-widths
    geometrically, in log price."""
    last = days["last_close"].to_numpy()
    ends = {}
    for f in ("model_raw", "har"):
        lo = np.log(days[f"{f}_lower_{pct}"].to_numpy() / last)
        hi = np.log(days[f"{f}_upper_{pct}"].to_numpy() / last)
        ends[f] = ((lo + hi) / 2, (hi - lo) / 2)
    mid = (ends["model_raw"][0] + ends["har"][0]) / 2
    half = np.sqrt(ends["model_raw"][1] * ends["har"][1])
    return last * np.exp(mid - half), last * np.exp(mid + half)


def variant(days: pd.DataFrame, source: str, step: float, lookback: int) -> pd.DataFrame:
    """`days` with the variant's intervals as the model's."""
    cols: dict[str, np.ndarray] = {}
    for level in LEVELS:
        pct = round(level * 100)
        if source == "combination":
            lo, hi = combined(days, pct)
            base = days.assign(_lo=lo, _hi=hi)
            cols[f"model_lower_{pct}"], cols[f"model_upper_{pct}"] = widened(
                base, "_lo", "_hi", level, step, lookback
            )
        else:
            cols[f"model_lower_{pct}"], cols[f"model_upper_{pct}"] = widened(
                days, f"model_raw_lower_{pct}", f"model_raw_upper_{pct}", level, step, lookback
            )
    return days.assign(**cols)


def brief(h: dict[str, Any]) -> dict[str, Any]:
    model, har = h["pooled"]["model"], h["pooled"]["har"]
    return {
        "interval_score_80": round(model["interval_score_80"], 4),
        "ratio_to_har": round(model["interval_score_80"] / har["interval_score_80"], 4),
        "panel_dm_vs_har_pvalue": h["dm_pooled"]["har"]["pvalue"],
        "coverage_80": round(model["coverage_80"], 4),
        "coverage_95": round(model["coverage_95"], 4),
        "kupiec_1pct_rejected_80": round(h["kupiec_1pct_rejected_share"]["80"]["model"], 4),
        "kupiec_1pct_rejected_95": round(h["kupiec_1pct_rejected_share"]["95"]["model"], 4),
        "tickers_ahead_of_har": h["ticker_wins"]["har"]["share"],
        "sign_test_pvalue": h["ticker_wins"]["har"]["sign_test_pvalue"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions")
    ap.add_argument("--report-from", default="2017-01-03")
    ap.add_argument("--lookback", type=int, default=conformal.LOOKBACK)
    args = ap.parse_args()
    days = pd.read_csv(args.sessions, parse_dates=["as_of", "for_date", "refit"])
    days = days.sort_values(["ticker", "as_of"], kind="stable").reset_index(drop=True)
    cut = days["as_of"] >= pd.Timestamp(args.report_from)
    out: dict[str, Any] = {"sessions": args.sessions, "report_from": args.report_from}
    rows = {}
    for source in ("model", "combination"):
        for step in STEPS:
            frame = backtest_scores.with_losses(variant(days, source, step, args.lookback))
            rows[f"{source}, ACI step {step}"] = {
                "before": brief(backtest_scores.headline(frame[~cut])),
                "final": brief(backtest_scores.headline(frame[cut])),
            }
    chosen = min(rows, key=lambda k: rows[k]["before"]["interval_score_80"])
    out.update(variants=rows, chosen_on_before=chosen, final_of_chosen=rows[chosen]["final"])
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
