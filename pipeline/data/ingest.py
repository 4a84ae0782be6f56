"""Ingest: pull a ticker's daily bars for one run date and keep the pull immutable.

Sources: `sample` (an embedded universe, replayed so the run for day D sees only rows up
to D), `csv` (a landing directory of <TICKER>.csv) and `yfinance`. A sample or csv pull
is bounded: the bars after the curated table's newest, plus its last
`source.overlap_sessions` bars again (see `bound_pull`); yfinance pulls a lookback window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipeline.carry import Ingested
from pipeline.config import EMBEDDED, SAMPLES_DIR, Config, embedded_tickers
from pipeline.data import store
from pipeline.data.bars import ADJ_CLOSE, COLUMNS, parse_dates, read_csv_text
from pipeline.layout import check_ticker

HistoryFn = Callable[[str, dt.date, dt.date], pd.DataFrame]


SAMPLE_DIR = SAMPLES_DIR  # the default universe's folder


def sample_tickers(universe: str = "default") -> list[str]:
    return embedded_tickers(universe)


def sample_path(ticker: str = "GOOG", universe: str = "default") -> Path:
    """The embedded series of `ticker` in `universe` (default: as traded, with the vendor's
    Adj Close; sp500: split-adjusted, gzip-compressed)."""
    shipped = sample_tickers(universe)
    if ticker not in shipped:
        listed = ", ".join(shipped) if len(shipped) <= 10 else f"{len(shipped)} tickers"
        raise ValueError(
            f"source.kind=sample ships {listed}, not {ticker!r} (universe {universe}); "
            "use source.kind=csv or yfinance for other tickers"
        )
    folder, suffix = EMBEDDED[universe]
    return folder / f"{ticker}{suffix}"


def read_text_csv(path: Path) -> pd.DataFrame:
    """A pull is kept as the text it arrived as; typing and judging it is validation's job."""
    return read_csv_text(path, keep_default_na=False)


def replay_until(raw: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """What a daily feed would have shown at the close of `day`: nothing dated later.

    Rows whose date cannot be read are kept, so validation sees and reports them.
    """
    if "Date" not in raw.columns:
        return raw
    dates = parse_dates(raw["Date"])
    return raw[dates.isna() | (dates <= pd.Timestamp(day))].reset_index(drop=True)


def normalize_yfinance(frame: pd.DataFrame) -> pd.DataFrame:
    """yfinance's history() frame (Date index, extra columns) -> our bar schema."""
    flat = frame.reset_index()
    flat.columns = [str(c[0] if isinstance(c, tuple) else c) for c in flat.columns]
    flat = flat.rename(columns={"index": "Date", "Datetime": "Date"})
    dates = pd.to_datetime(flat["Date"], utc=False)
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    flat["Date"] = dates.dt.normalize().dt.strftime("%Y-%m-%d")
    # auto_adjust=False gives the vendor's Adj Close too: validation adjusts with it
    return flat[[*COLUMNS, ADJ_CLOSE] if ADJ_CLOSE in flat else COLUMNS].astype(str)


def _yfinance_history(ticker: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    import yfinance as yf  # network-bound; imported only when this source is used

    return yf.Ticker(ticker).history(
        start=start.isoformat(), end=(end + dt.timedelta(days=1)).isoformat(), auto_adjust=False
    )


def fetch_yfinance(
    ticker: str, day: dt.date, lookback_days: int, history: HistoryFn = _yfinance_history
) -> pd.DataFrame:
    start = day - dt.timedelta(days=lookback_days)
    return replay_until(normalize_yfinance(history(ticker, start, day)), day)


def bound_pull(raw: pd.DataFrame, stored: pd.Series, overlap: int) -> pd.DataFrame:
    """The rows of a full-history pull that are new since the stored dates, plus the last
    `overlap` stored sessions again (a revised or re-based bar among them still shows);
    the whole pull while fewer than `overlap` sessions are stored. Rows whose date cannot
    be read are kept, so validation sees and reports them."""
    if "Date" not in raw.columns or len(stored) < overlap:
        return raw
    since = pd.Series(stored).sort_values().iloc[-overlap]
    dates = parse_dates(raw["Date"])
    return raw[dates.isna() | (dates >= since)].reset_index(drop=True)


def pull(cfg: Config, ticker: str, day: dt.date, bounded: bool = True) -> pd.DataFrame:
    """The source's bars up to `day`; `bounded`: only those new since the curated table
    (plus the overlap), as a day's stored pull; unbounded: the whole history (the backtest)."""
    kind = cfg.source.kind
    if kind == "yfinance":
        return fetch_yfinance(ticker, day, cfg.source.lookback_days)
    if kind == "sample":
        path = sample_path(ticker, cfg.universe)
    else:
        path = cfg.resolve(cfg.source.csv_dir) / f"{check_ticker(ticker)}.csv"
    if not bounded:
        return replay_until(read_text_csv(path), day)
    stored = store.read_curated(cfg, ticker, until=day)["Date"]
    return bound_pull(replay_until(read_text_csv(path), day), stored, cfg.source.overlap_sessions)


def run(cfg: Config, ticker: str, day: dt.date) -> Ingested:
    """Write the pull for (ticker, day) once; a second run for the same day reuses it."""
    path = cfg.layout.raw_path(ticker, day)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pull(cfg, ticker, day).to_csv(tmp, index=False)
        tmp.replace(path)  # atomic: a crash never leaves half a pull that later runs trust
    return {"raw_path": str(path)}
