import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.data import ingest
from pipeline.data.bars import read_bars_csv

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_sample_replay_sees_nothing_after_the_run_date(cfg: Config) -> None:
    out = ingest.run(cfg, "GOOG", dt.date(2010, 1, 9))  # a Saturday
    bars = read_bars_csv(out["raw_path"])
    assert bars["Date"].max() == pd.Timestamp("2010-01-08")
    assert bars["Date"].min() == pd.Timestamp("2004-08-19")


def test_same_day_twice_changes_nothing(cfg: Config) -> None:
    first = Path(ingest.run(cfg, "GOOG", dt.date(2012, 6, 1))["raw_path"])
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    second = Path(ingest.run(cfg, "GOOG", dt.date(2012, 6, 1))["raw_path"])
    assert second == first and (first.read_bytes(), first.stat().st_mtime_ns) == before


def test_csv_landing_source(make_cfg, tmp_path: Path, sample_bars: pd.DataFrame) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    sample_bars.head(300).to_csv(landing / "ACME.csv", index=False, date_format="%Y-%m-%d")
    cfg = make_cfg(source__kind="csv", source__csv_dir=str(landing), tickers="[ACME]")
    out = ingest.run(cfg, "ACME", dt.date(2005, 1, 3))
    got = read_bars_csv(out["raw_path"])
    assert got["Date"].max() <= pd.Timestamp("2005-01-03") and len(got) > 50


def test_sample_source_refuses_other_tickers(cfg: Config) -> None:
    with pytest.raises(ValueError, match="ships AAPL, GOOG, IBM, MSFT, not 'ACME'"):
        ingest.pull(cfg, "ACME", dt.date(2010, 1, 4))


def _recorded_history(ticker: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """A yfinance Ticker.history() response recorded to CSV (see tests/fixtures/README.md)."""
    frame = pd.read_csv(FIXTURES / "yfinance_GOOG_history.csv", index_col="Date")
    frame.index = pd.to_datetime(frame.index, utc=True).tz_convert("America/New_York")
    return frame


def test_yfinance_connector_on_recorded_response() -> None:
    got = ingest.fetch_yfinance("GOOG", dt.date(2013, 2, 28), 30, history=_recorded_history)
    assert "Adj Close" in got  # kept in the raw pull: validation adjusts with it
    bars = read_bars_csv_from_frame(got)
    assert list(bars.columns) == ["Date", "Open", "High", "Low", "Close", "Volume"]
    assert bars.attrs["adjusted"]
    assert bars["Date"].max() == pd.Timestamp("2013-02-28")  # replay cut-off applies
    assert bars["Date"].is_monotonic_increasing and not bars.isna().any().any()


def read_bars_csv_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    from pipeline.data.bars import coerce_bars

    return coerce_bars(frame)
