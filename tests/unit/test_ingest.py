import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.data import ingest, store
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


# --- the S&P 500 universe -------------------------------------------------------------


def test_the_sp500_universe_ships_394_gzip_files_with_provenance() -> None:
    tickers = ingest.sample_tickers("sp500")
    assert len(tickers) == 394 and tickers == sorted(tickers) and "BF.B" in tickers
    assert ingest.sample_tickers() == ["AAPL", "GOOG", "IBM", "MSFT"]  # the default's own
    rows = sum(len(pd.read_csv(ingest.sample_path(t, "sp500"))) for t in tickers)
    assert rows == 482_241
    readme = (ingest.sample_path("A", "sp500").parent / "README.md").read_text()
    assert "Copyright (c) 2017 Cam Nugent" in readme and "MIT License" in readme
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"data/samples/sp500/*"' in pyproject  # shipped as package data


def test_a_fresh_sp500_pull_is_the_embedded_file_byte_for_byte(make_cfg) -> None:
    cfg = make_cfg(universe="sp500")
    for ticker in ("BF.B", "DHR"):  # a dot in the name; rows with empty fields
        raw = Path(ingest.run(cfg, ticker, dt.date(2018, 2, 7))["raw_path"])
        assert raw.read_bytes() == gzip.decompress(ingest.sample_path(ticker, "sp500").read_bytes())


def test_sp500_replay_cuts_at_the_day_and_refuses_other_tickers(make_cfg) -> None:
    cfg = make_cfg(universe="sp500")
    bars = read_bars_csv(ingest.run(cfg, "DISCA", dt.date(2014, 8, 9))["raw_path"])
    assert bars["Date"].max() == pd.Timestamp("2014-08-08")
    with pytest.raises(ValueError, match=r"ships 394 tickers, not 'AAPLX' \(universe sp500\)"):
        ingest.pull(cfg, "AAPLX", dt.date(2018, 2, 7))


# --- bounded pulls --------------------------------------------------------------------


def _store(cfg: Config, ticker: str, bars: pd.DataFrame) -> pd.Series:
    day = bars["Date"].max().date()
    store.publish_curated(cfg, ticker, bars.reset_index(drop=True), pd.DataFrame(), day)
    return bars["Date"]


def test_a_later_day_pulls_the_new_bars_and_an_overlap(
    cfg: Config, sample_bars: pd.DataFrame
) -> None:
    stored = _store(cfg, "GOOG", sample_bars[sample_bars["Date"] <= "2012-05-25"])
    got = read_bars_csv(ingest.run(cfg, "GOOG", dt.date(2012, 6, 1))["raw_path"])
    since = stored.iloc[-cfg.source.overlap_sessions]
    want = sample_bars["Date"][
        (sample_bars["Date"] >= since) & (sample_bars["Date"] <= "2012-06-01")
    ]
    assert got["Date"].tolist() == want.tolist()
    assert len(got) == 5 + 4  # 5 stored again; 05-29 .. 06-01 new (05-28 a holiday)


def test_a_backfill_pulls_the_overlap_before_its_own_day(
    make_cfg, sample_bars: pd.DataFrame
) -> None:
    cfg = make_cfg(source__overlap_sessions=3)
    _store(cfg, "GOOG", sample_bars[sample_bars["Date"] <= "2013-03-01"])
    got = read_bars_csv(ingest.run(cfg, "GOOG", dt.date(2012, 6, 2))["raw_path"])  # Saturday
    assert got["Date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2012-05-30",
        "2012-05-31",
        "2012-06-01",
    ]


def test_fewer_stored_sessions_than_the_overlap_pull_the_whole_history(
    cfg: Config, sample_bars: pd.DataFrame
) -> None:
    _store(cfg, "GOOG", sample_bars.head(3))
    got = read_bars_csv(ingest.run(cfg, "GOOG", dt.date(2005, 1, 3))["raw_path"])
    assert got["Date"].min() == sample_bars["Date"].min()


def test_rows_with_unreadable_dates_stay_in_a_bounded_pull(
    make_cfg, tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    text = sample_bars.head(300).to_csv(index=False, date_format="%Y-%m-%d")
    (landing / "ACME.csv").write_text(text + "03/01/2005,1,1,1,1,1\n")
    cfg = make_cfg(source__kind="csv", source__csv_dir=str(landing))
    _store(cfg, "ACME", sample_bars.head(250))
    raw = pd.read_csv(ingest.run(cfg, "ACME", dt.date(2006, 1, 3))["raw_path"], dtype=str)
    assert len(raw) == 5 + 50 + 1 and raw["Date"].iloc[-1] == "03/01/2005"
    assert raw["Date"].iloc[0] == f"{sample_bars['Date'].iloc[245]:%Y-%m-%d}"


def test_bound_pull_keeps_the_overlap_the_new_and_the_unreadable() -> None:
    raw = pd.DataFrame({"Date": ["2019-12-31", "2020-01-01", "bad", "2020-01-02"], "Close": "1"})
    stored = pd.Series(pd.to_datetime(["2019-12-30", "2019-12-31", "2020-01-01"]))
    got = ingest.bound_pull(raw, stored, 2)
    assert got["Date"].tolist() == ["2019-12-31", "2020-01-01", "bad", "2020-01-02"]
    assert ingest.bound_pull(raw, stored, 1)["Date"].tolist() == ["2020-01-01", "bad", "2020-01-02"]
    assert ingest.bound_pull(raw, stored.head(1), 2) is raw  # too few stored: all of it


def test_bounded_pulls_build_the_table_a_whole_history_would(make_cfg, tmp_path: Path) -> None:
    """MSFT goes ex-dividend on 2012-11-13: its Adj Close re-bases every older bar. The
    overlap shows the re-basing to validation, so the table comes out the same."""
    from pipeline.config import throwaway_config
    from pipeline.data import validate

    daily = make_cfg(validation__check_freshness="false")
    for day in (dt.date(2012, 11, 12), dt.date(2012, 11, 13)):
        validate.run(daily, "MSFT", day, ingest.run(daily, "MSFT", day)["raw_path"])
    assert len(pd.read_csv(daily.layout.raw_path("MSFT", dt.date(2012, 11, 13)))) == 6
    whole = throwaway_config(tmp_path / "whole", validation__check_freshness="false")
    day = dt.date(2012, 11, 13)
    validate.run(whole, "MSFT", day, ingest.run(whole, "MSFT", day)["raw_path"])
    got, want = store.read_curated(daily, "MSFT"), store.read_curated(whole, "MSFT")
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)
    assert ",adjustment," in daily.layout.revisions_path("MSFT").read_text()  # one row
