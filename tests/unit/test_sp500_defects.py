"""The S&P 500 data's real defects (pipeline/data/samples/sp500/README.md), each through
the daily validation as a chunk of tickers in one GX run: what happens to every one."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config, throwaway_config
from pipeline.data import features, gaps, ingest, rules, store, validate

DAY = dt.date(2018, 2, 7)  # the data's last session
DEFECTIVE = ["AOS", "APTV", "DHR", "DISCA", "O", "UA"]


def _landing(root: Path, tickers: list[str]) -> Path:
    landing = root / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for t in tickers:
        frame = pd.read_csv(ingest.sample_path(t, "sp500"), dtype=str, keep_default_na=False)
        frame.to_csv(landing / f"{t}.csv", index=False)
    return landing


def _chunk(cfg: Config, tickers: list[str]) -> dict[str, object]:
    raws = {t: ingest.run(cfg, t, DAY)["raw_path"] for t in tickers}
    return dict(validate.run_chunk(cfg, DAY, raws, cfg.layout.data_docs()))


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, object]]:
    root = tmp_path_factory.mktemp("sp500")
    cfg = throwaway_config(root, source__kind="csv", source__csv_dir=str(_landing(root, DEFECTIVE)))
    return cfg, _chunk(cfg, DEFECTIVE)


def _rows(cfg: Config, ticker: str) -> set[tuple[str, str]]:
    table = store.read_quarantined_rows(cfg, ticker)
    return set(zip(table["Date"], table["rule"], strict=True))


def test_empty_fields_are_quarantined_as_rows_and_the_ticker_goes_on(day) -> None:  # type: ignore[no-untyped-def]
    cfg, out = day
    rules = dict(_rows(cfg, "DHR"))
    assert "not_null" in rules["2015-07-17"] and "not_null" in rules["2016-01-12"]
    assert "not_null" in dict(_rows(cfg, "UA"))["2016-04-07"]
    dhr = out["DHR"]
    assert isinstance(dhr, dict) and dhr["quarantined_rows"] >= 2
    curated = store.read_curated(cfg, "DHR")
    assert pd.Timestamp("2015-07-17") not in set(curated["Date"])  # left out, the rest kept
    assert curated["Date"].max() == pd.Timestamp(DAY) and len(curated) > 1200


def test_high_below_low_is_quarantined_as_its_row(day) -> None:  # type: ignore[no-untyped-def]
    cfg, out = day
    assert "high_is_highest" in dict(_rows(cfg, "AOS"))["2014-05-19"]
    assert isinstance(out["AOS"], dict)


def test_open_or_close_outside_the_range_is_quarantined(day) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = day
    rules = dict(_rows(cfg, "O"))
    assert "low_is_lowest" in rules["2014-08-27"]  # Close 44.5272 below Low 44.66
    assert len(rules) == len(store.read_quarantined_rows(cfg, "O"))  # one record per row


def test_days_missing_inside_a_span_are_reported(day) -> None:  # type: ignore[no-untyped-def]
    _, out = day
    missing = out["DHR"]["missing_sessions"]  # type: ignore[index]
    assert missing["count"] >= 16 and "2013-04-26" in missing["days"]


def test_a_move_over_missing_sessions_is_never_a_one_session_return(day) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = day
    bars = store.read_curated(cfg, "DHR")
    cut = gaps.breaks(bars["Date"].to_numpy(), "XNYS")
    assert cut.sum() >= 5
    feats = features.make_features(bars, 20, 20, "XNYS")
    after_gap = set(bars["Date"][cut])
    assert not after_gap & set(feats["Date"])  # no row's return spans a gap
    labelled = feats.dropna(subset=[features.TARGET])
    before_gap = set(bars["Date"].shift()[cut])
    assert not before_gap & set(labelled["Date"])  # nor is any target such a move


def test_a_share_dividend_holds_the_ticker_out_naming_the_day_and_ratio(day) -> None:  # type: ignore[no-untyped-def]
    cfg, out = day
    held = out["DISCA"]
    assert isinstance(held, rules.Skipped) and held.status == rules.HELD_OUT
    assert "2014-08-07 (apparent 2:1)" in held.reason
    assert store.read_curated(cfg, "DISCA")["Date"].max() == pd.Timestamp(DAY)  # kept


def test_a_corporate_actions_file_adjusts_it_instead(tmp_path: Path) -> None:
    actions = tmp_path / "actions.csv"
    actions.write_text("Date,Ticker,Dividends,Stock Splits\n2014-08-07,DISCA,0,2\n")
    cfg = throwaway_config(
        tmp_path,
        source__kind="csv",
        source__csv_dir=str(_landing(tmp_path, ["DISCA"])),
        source__actions_file=str(actions),
    )
    out = _chunk(cfg, ["DISCA"])["DISCA"]
    assert isinstance(out, dict), out
    bars = store.read_adjusted(cfg, "DISCA")
    move = bars.set_index("Date")["Close"].pct_change()[pd.Timestamp("2014-08-07")]
    assert abs(move) < 0.1  # a normal day, not a 51 % fall


def test_a_ticker_listed_late_is_too_short_then_joins(day) -> None:  # type: ignore[no-untyped-def]
    _, out = day
    short = out["APTV"]
    assert isinstance(short, rules.Skipped) and short.status == rules.TOO_SHORT
    assert "44 valid sessions" in short.reason


def test_a_price_an_order_of_magnitude_off_is_quarantined_alone(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    bars = pd.read_csv(ingest.sample_path("GOOG"))
    bars.loc[1000, "Close"] *= 10  # one bad close; its neighbours are fine
    bars.loc[1000, "High"] = bars.loc[1000, "Close"]
    landing.mkdir(parents=True)
    bars.drop(columns="Adj Close").to_csv(landing / "GOOG.csv", index=False)
    local = throwaway_config(tmp_path, source__kind="csv", source__csv_dir=str(landing))
    day = dt.date(2013, 3, 1)
    out = validate.run_chunk(
        local, day, {"GOOG": ingest.run(local, "GOOG", day)["raw_path"]}, None
    )["GOOG"]
    assert isinstance(out, dict), out
    assert _rows(local, "GOOG") == {(bars.loc[1000, "Date"], "price_off_neighbours")}


def test_a_lasting_jump_holds_the_ticker_out_and_keeps_every_row(tmp_path: Path) -> None:
    """A move beyond plausible that stays (a change of units, an unknown corporate action)
    is not one bad row: no row is dropped, day after day, and the ticker is held out."""
    landing = tmp_path / "landing"
    landing.mkdir()
    bars = pd.read_csv(ingest.sample_path("GOOG")).drop(columns="Adj Close")
    bars.loc[1000:, ["Open", "High", "Low", "Close"]] *= 3.3  # log move 1.19, no split ratio
    bars.to_csv(landing / "GOOG.csv", index=False)
    cfg = throwaway_config(tmp_path, source__kind="csv", source__csv_dir=str(landing))
    for day in (dt.date(2013, 2, 28), dt.date(2013, 3, 1)):
        out = _chunk_on(cfg, day, ["GOOG"])["GOOG"]
        assert isinstance(out, rules.Skipped) and out.status == rules.HELD_OUT
        assert f"{bars.loc[1000, 'Date']} (|log move| 1.2" in out.reason  # 1.19 + the day's move
    assert len(store.read_curated(cfg, "GOOG")) == len(bars)  # nothing eroded
    assert store.read_quarantined_rows(cfg, "GOOG").empty


def test_a_stock_not_listed_yet_is_too_short_not_a_failure(tmp_path: Path) -> None:
    cfg = throwaway_config(
        tmp_path, source__kind="csv", source__csv_dir=str(_landing(tmp_path, ["APTV"]))
    )
    out = _chunk_on(cfg, dt.date(2017, 11, 1), ["APTV"])["APTV"]  # its first bar: 2017-12
    assert isinstance(out, rules.Skipped) and out.status == rules.TOO_SHORT
    assert "no bar yet" in out.reason


def _chunk_on(cfg: Config, day: dt.date, tickers: list[str]) -> dict[str, object]:
    raws = {t: ingest.run(cfg, t, day)["raw_path"] for t in tickers}
    return dict(validate.run_chunk(cfg, day, raws, None))


def test_a_backtest_reads_whole_histories_by_the_same_rules(day) -> None:  # type: ignore[no-untyped-def]
    """history.screen (one GX run over whole histories, what the backtest reads) leaves out
    the rows and tickers the daily step quarantines or holds out, with the same reasons."""
    from pipeline.evaluation import backtest_series

    cfg, _ = day
    series, left_out = backtest_series.load_universe(cfg, DEFECTIVE, DAY)
    assert left_out["DISCA"].startswith("held_out: 1 day(s) look like a split")
    assert "2014-08-07 (apparent 2:1)" in left_out["DISCA"]
    assert left_out["APTV"].startswith("too_short: ")
    kept = {s.ticker: s for s in series}
    assert set(kept) == {"AOS", "DHR", "O", "UA"}
    for ticker in ("DHR", "AOS"):  # the same rows as the daily step's quarantine, no more
        dropped = {d for d, _ in _rows(cfg, ticker)}
        dates = set(kept[ticker].bars["Date"].dt.strftime("%Y-%m-%d"))
        assert not dropped & dates
        assert len(dates) + len(dropped) == len(store.read_curated(cfg, ticker)) + len(dropped)
    # a move over missing sessions is no input and no target in the backtest either
    bars, feats = kept["DHR"].bars, kept["DHR"].feats
    cut = gaps.breaks(bars["Date"].to_numpy(), cfg.validation.calendar)
    assert cut.sum() >= 5 and not set(bars["Date"][cut]) & set(feats["Date"])
    labelled = set(feats.dropna(subset=[features.TARGET])["Date"])
    assert not set(bars["Date"].shift()[cut]) & labelled
