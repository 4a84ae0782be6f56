"""The series a walk-forward backtest reads: every ticker's whole history, screened.

The histories come from the configured source as a run on the backtest's last day would
see them; pipeline/data/history.py judges them by the daily step's rules in one GX run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.data.features import make_features


@dataclass(frozen=True)
class Series:
    """One ticker's adjusted bars and features, with each feature row's bar position."""

    ticker: str
    bars: pd.DataFrame
    feats: pd.DataFrame
    bar_of: np.ndarray


def load_universe(
    cfg: Config, tickers: list[str], end: dt.date
) -> tuple[list[Series], dict[str, str]]:
    """The tickers' whole histories from the configured source, as a run on `end` would
    see them: screened by the daily step's rules in one GX run (a failing row left out, a
    ticker it would hold out or find too short left out with the reason: the second value),
    adjusted by the corporate-actions file, features broken at missing sessions."""
    from pipeline.data import history, ingest
    from pipeline.data.bars import BarsError, coerce_bars

    histories, left_out = {}, {}
    for ticker in tickers:
        try:
            raw = ingest.pull(cfg, ticker, end, bounded=False)
            # an empty field is a missing value, as when a stored pull is read back
            histories[ticker] = coerce_bars(raw.mask(raw == ""))
        except (BarsError, OSError) as exc:
            left_out[ticker] = f"unreadable: {exc}"[:300]
    series = []
    for ticker, screened in history.screen(cfg, histories).items():
        if screened.bars is None:
            left_out[ticker] = screened.left_out
        else:
            series.append(make_series(cfg, ticker, screened.bars))
    return series, left_out


def load_series(cfg: Config, ticker: str, end: dt.date) -> Series:
    """One ticker's series (load_universe), or ValueError saying why it is left out."""
    series, left_out = load_universe(cfg, [ticker], end)
    if left_out:
        raise ValueError(f"{ticker}: {left_out[ticker]}")
    return series[0]


def make_series(cfg: Config, ticker: str, bars: pd.DataFrame) -> Series:
    fc = cfg.features
    feats = make_features(bars, fc.volatility_window, fc.volume_window, cfg.validation.calendar)
    bar_of = pd.Index(bars["Date"]).get_indexer(pd.DatetimeIndex(feats["Date"]))
    return Series(ticker, bars.reset_index(drop=True), feats, bar_of)
