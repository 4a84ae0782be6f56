import datetime as dt
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.layout import BadTicker, Layout, alias_uri, check_ticker, parse_alias_uri, version_uri

DAY = dt.date(2013, 3, 1)


def test_paths_are_under_the_state_root_and_shaped_as_documented(tmp_path: Path) -> None:
    at = Layout(tmp_path)
    assert at.raw_path("GOOG", DAY) == tmp_path / "raw" / "GOOG" / "2013-03-01.csv"
    assert at.curated_path("GOOG") == tmp_path / "curated" / "GOOG.parquet"
    assert at.revisions_path("GOOG") == tmp_path / "curated" / "GOOG.revisions.csv"
    assert at.quarantine_dir("GOOG", DAY) == tmp_path / "quarantine" / "GOOG" / "2013-03-01"
    assert at.features_dir("GOOG", DAY) == tmp_path / "features" / "GOOG" / "2013-03-01"
    assert at.features_path("GOOG", DAY) == at.features_dir("GOOG", DAY) / "features.parquet"
    assert at.forecasts_db() == tmp_path / "forecasts.sqlite"
    assert at.data_docs() == tmp_path / "reports" / "data_docs"
    assert at.logs_dir() == tmp_path / "logs" and at.airflow_home() == tmp_path / "airflow"
    assert not any(tmp_path.iterdir())  # asking for a path creates nothing


def test_config_layout_uses_the_state_dir(cfg: Config) -> None:
    assert cfg.layout.root == cfg.state
    assert cfg.layout.curated_path("GOOG").is_relative_to(cfg.state)


BAD_TICKERS = ["../../x", "/abs/x", "../../../etc", "..", ".hidden", "GOOG'", "A B", "", "X" * 21]


@pytest.mark.parametrize("ticker", BAD_TICKERS)
def test_a_ticker_cannot_lead_out_of_the_state_dir(tmp_path: Path, ticker: str) -> None:
    at = Layout(tmp_path / "state")
    for build in (
        lambda: at.raw_path(ticker, DAY),
        lambda: at.features_path(ticker, DAY),
        lambda: at.latest_features(ticker),
        lambda: at.curated_path(ticker),
        lambda: at.revisions_path(ticker),
        lambda: at.quarantine_dir(ticker, DAY),
    ):
        with pytest.raises(BadTicker, match="is not a plain symbol"):
            build()
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("ticker", ["GOOG", "BRK-B", "BRK.B", "^GSPC", "EURUSD=X", "GC=F", "7203"])
def test_real_symbols_are_plain(ticker: str) -> None:
    assert check_ticker(ticker) == ticker


def test_a_part_that_leaves_the_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="would leave the state directory"):
        Layout(tmp_path)._under("..", "x")


def test_curated_tables_lists_only_tables(tmp_path: Path) -> None:
    at = Layout(tmp_path)
    assert at.curated_tables() == []
    (tmp_path / "curated").mkdir()
    for name in ("MSFT.parquet", "GOOG.parquet", "GOOG.revisions.csv"):
        (tmp_path / "curated" / name).touch()
    assert at.curated_tables() == [at.curated_path("GOOG"), at.curated_path("MSFT")]


def test_latest_features_picks_the_newest_day(tmp_path: Path) -> None:
    at = Layout(tmp_path)
    assert at.latest_features("GOOG") is None
    for day in (dt.date(2013, 1, 2), dt.date(2012, 12, 31), dt.date(2013, 3, 1)):
        at.features_dir("GOOG", day).mkdir(parents=True)
        at.features_path("GOOG", day).touch()
    at.features_dir("GOOG", dt.date(2013, 3, 4)).mkdir()  # a run that built no features
    at.features_path("MSFT", dt.date(2014, 1, 1)).parent.mkdir(parents=True)
    at.features_path("MSFT", dt.date(2014, 1, 1)).touch()
    assert at.latest_features("GOOG") == at.features_path("GOOG", DAY)


def test_model_uris_round_trip() -> None:
    assert version_uri("price_lstm_GOOG", 3) == "models:/price_lstm_GOOG/3"
    assert alias_uri("price_lstm_GOOG", "production") == "models:/price_lstm_GOOG@production"
    assert parse_alias_uri(alias_uri("price_lstm_GOOG", "production")) == (
        "price_lstm_GOOG",
        "production",
    )


@pytest.mark.parametrize("uri", ["models:/price_lstm_GOOG/3", "price_lstm_GOOG@production", ""])
def test_parse_alias_uri_refuses_other_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="expected models:/<name>@<alias>"):
        parse_alias_uri(uri)


def test_ensure_sqlite_dir_makes_the_folder_only_for_sqlite(tmp_path: Path) -> None:
    from pipeline.layout import ensure_sqlite_dir

    url = f"sqlite:///{tmp_path}/a/b/store.db"
    assert ensure_sqlite_dir(url) == url and (tmp_path / "a" / "b").is_dir()
    assert not (tmp_path / "a" / "b" / "store.db").exists()  # the file is SQLite's to make
    pg = "postgresql://u@h/db"
    assert ensure_sqlite_dir(pg) == pg
