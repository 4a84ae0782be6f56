"""Ingest: pull a ticker's daily bars for one run date and keep the pull immutable.

Sources: `sample` (the embedded four-stock universe, replayed so the run for day D
sees only rows up to D), `csv` (a landing directory of <TICKER>.csv) and `yfinance`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pandas as pd

from pipeline.config import Config
from pipeline.data.bars import ADJ_CLOSE, COLUMNS, parse_dates, read_csv_text
from pipeline.layout import check_ticker
from pipeline.orchestration.carry import Ingested

HistoryFn = Callable[[str, dt.date, dt.date], pd.DataFrame]


SAMPLE_DIR = Path(str(resources.files("pipeline") / "data" / "samples"))


def sample_tickers() -> list[str]:
    return sorted(p.stem for p in SAMPLE_DIR.glob("*.csv"))


def sample_path(ticker: str = "GOOG") -> Path:
    """The embedded series of `ticker` (as traded, with the vendor's Adj Close)."""
    if ticker not in sample_tickers():
        raise ValueError(
            f"source.kind=sample ships {', '.join(sample_tickers())}, not {ticker!r}; "
            "use source.kind=csv or yfinance for other tickers"
        )
    return SAMPLE_DIR / f"{ticker}.csv"


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


def pull(cfg: Config, ticker: str, day: dt.date) -> pd.DataFrame:
    kind = cfg.source.kind
    if kind == "sample":
        return replay_until(read_text_csv(sample_path(ticker)), day)
    if kind == "csv":
        return replay_until(
            read_text_csv(cfg.resolve(cfg.source.csv_dir) / f"{check_ticker(ticker)}.csv"), day
        )
    return fetch_yfinance(ticker, day, cfg.source.lookback_days)


def run(cfg: Config, ticker: str, day: dt.date) -> Ingested:
    """Write the pull for (ticker, day) once; a second run for the same day reuses it."""
    path = cfg.layout.raw_path(ticker, day)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pull(cfg, ticker, day).to_csv(tmp, index=False)
        tmp.replace(path)  # atomic: a crash never leaves half a pull that later runs trust
    return {"raw_path": str(path)}
