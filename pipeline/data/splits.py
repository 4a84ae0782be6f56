"""Stock splits a vendor did not adjust for: found in the bars, named in the refusal.

In a split the whole bar re-prices overnight by the split ratio; taken as a return, it
would teach the model a crash that never happened. A series with the vendor's
`Adj Close` is adjusted before validation (pipeline/data/bars.py), so this looks only at
series without one.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.bars import ADJ_CLOSE, Problem

# Split ratios as exchanges announce them (new shares per old; below 1: reverse splits).
# Not 3:2 or 5:4: over 394 S&P 500 stocks in 2013-2018, 22 real earnings-day falls opened
# within 3 % of a 5:4 split's -20 % (AKAM, AMD, EFX, ...), and would have been held out
# for it; such a split needs the corporate-actions file (pipeline/data/actions.py).
SPLIT_RATIOS = (2, 3, 4, 5, 7, 8, 10, 15, 20, *(1 / r for r in (2, 3, 4, 5, 8, 10)))
# |log| distance of open / previous close from 1 / ratio. 0.045: DISCA's 2:1 share
# dividend of 2014-08-07 opened at 0.521 of the previous close (0.041 from a half);
# AAPL's real 52 % fall of 2000-09-29 opened at 0.527 (0.053): not a split.
SPLIT_GAP_TOLERANCE = 0.045
RATIOS = np.array(SPLIT_RATIOS, dtype="float64")


def apparent_splits(bars: pd.DataFrame) -> pd.Series:
    """Per day, the split ratio the bar looks like, or NaN.

    In a split the whole bar re-prices overnight: the open lands within a few percent of
    previous close / ratio (AAPL's and MSFT's 2:1 splits: 0.499-0.510), and the day
    trades on from there. A real crash rarely opens that exactly on a ratio (AAPL's 52 %
    fall of 2000-09-29 opened at 0.527 of the previous close). Only meaningful on bars
    the vendor did not adjust. Every ratio at once, in NumPy: this runs over every
    ticker's whole history every day.
    """
    close = bars["Close"].to_numpy(dtype="float64")
    previous = np.concatenate([[np.nan], close[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.log(bars["Open"].to_numpy(dtype="float64") / previous)[:, None]
        day = np.log(close / previous)[:, None]
    moved = -np.log(RATIOS)[None, :]
    hit = (np.abs(gap - moved) < SPLIT_GAP_TOLERANCE) & (np.abs(day - moved) < np.abs(moved) / 2)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    out = np.where(first >= 0, RATIOS[np.maximum(first, 0)], np.nan)
    return pd.Series(out, index=bars.index)


def split_problem(result: Any, frame: pd.DataFrame) -> Problem:
    res = result.result or {}
    idx = [i for i in res.get("partial_unexpected_index_list") or [] if i in frame.index][:3]
    days = "; ".join(
        f"{frame.at[i, 'Date']:%Y-%m-%d} (apparent {split_text(frame.at[i, 'split_ratio'])} split: "
        f"open {frame.at[i, 'Open'] / frame.at[i - 1, 'Close']:.3f} of the previous close)"
        for i in idx
    )
    return Problem(
        "unadjusted_split",
        f"{res.get('unexpected_count', '?')} day(s) look like a stock split the prices were not "
        f"adjusted for: {days}; send the vendor's '{ADJ_CLOSE}' column (the pipeline adjusts "
        "with it) or adjusted prices",
    )


def split_text(ratio: float) -> str:
    """2.0 -> '2:1'; 0.5 -> '1:2' (reverse); 1.5 -> '3:2'."""
    frac = Fraction(ratio).limit_denominator(20)
    return f"{frac.numerator}:{frac.denominator}"


def split_days(bars: pd.DataFrame) -> list[tuple[pd.Timestamp, float]]:
    """(day, ratio) of every day in `bars` that looks like an unadjusted split."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = apparent_splits(bars.reset_index(drop=True))
    hit = ratios.notna().to_numpy()
    return list(zip(bars["Date"][hit], ratios[hit], strict=True))
