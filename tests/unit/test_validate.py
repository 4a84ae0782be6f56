"""Each rule of the GX suite, one fault at a time, through the real GX engine."""

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.data import ingest, store, suite, validate
from pipeline.data.ingest import sample_path

Corruption = Callable[[pd.DataFrame], pd.DataFrame]
ROW = 1000  # a day in the middle of the sample


def _set(col: str, value: object) -> Corruption:
    def corrupt(df: pd.DataFrame) -> pd.DataFrame:
        df = df.astype({col: object}) if isinstance(value, str) else df
        df.loc[ROW, col] = value
        return df

    return corrupt


def _high_below_open(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[ROW, "High"] = df.loc[ROW, "Low"]
    return df


def _low_above_close(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[ROW, "Low"] = df.loc[ROW, "High"]
    return df


def _duplicate_date(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df.iloc[: ROW + 1], df.iloc[[ROW]], df.iloc[ROW + 1 :]])


def _swap_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.iloc[[*range(ROW), ROW + 1, ROW, *range(ROW + 2, len(df))]]


def _price_doubles(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[ROW, ["Open", "High", "Low", "Close"]] *= 2
    return df


def _level_jumps(df: pd.DataFrame) -> pd.DataFrame:
    """Prices x3.3 from ROW on: no split ratio, a log move of 1.19."""
    df.loc[ROW:, ["Open", "High", "Low", "Close"]] *= 3.3
    return df


CORRUPTIONS: dict[str, tuple[Corruption, str]] = {
    "missing column": (lambda df: df.drop(columns="Volume"), "columns"),
    "no rows": (lambda df: df.iloc[:0], "rows"),
    "text in a number": (_set("Open", "abc"), "numeric"),
    "malformed date": (_set("Date", "2010-13-45"), "date_format"),
    "null": (_set("Close", float("nan")), "not_null"),
    "price not > 0": (_set("Low", 0.0), "positive_prices"),
    "high below open": (_high_below_open, "high_is_highest"),
    "low above close": (_low_above_close, "low_is_lowest"),
    "negative volume": (_set("Volume", -5.0), "volume_non_negative"),
    "duplicate date": (_duplicate_date, "one_row_per_date"),
    "dates out of order": (_swap_rows, "dates_increasing"),
    "implausible move": (_level_jumps, "plausible_daily_move"),
    "one bar doubled": (_price_doubles, "unadjusted_split"),
    "short history": (lambda df: df.iloc[:100], "min_history"),
}


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


@pytest.mark.parametrize("fault", list(CORRUPTIONS))
def test_each_fault_is_rejected_by_name(
    fault: str, cfg: Config, tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    corrupt, rule = CORRUPTIONS[fault]
    path = _write(corrupt(sample_bars.copy()), tmp_path / "bad.csv")
    report = suite.validate_file(path, cfg)
    assert not report.success
    assert rule in {f.rule for f in report.failures}, report.summary()


def test_clean_file_passes_every_expectation_but_freshness(cfg: Config) -> None:
    report = suite.validate_file(sample_path(), cfg)
    assert report.success and not report.failures
    expectations = suite.load_suite_spec(daily=True)["expectations"]
    assert report.checked == len(expectations) - 1  # a file has no run day to be fresh for


def test_unreadable_file_fails_before_the_suite(cfg: Config, tmp_path: Path) -> None:
    report = suite.validate_file(tmp_path / "absent.csv", cfg)
    assert not report.success and report.checked == 0
    assert [f.rule for f in report.failures] == ["file"]


def test_types_rule_catches_untyped_frame(cfg: Config, sample_bars: pd.DataFrame) -> None:
    report = suite.validate_bars(
        sample_bars.astype({"Volume": str}), suite.suite_params(cfg, None), daily=False
    )
    assert "types" in {f.rule for f in report.failures}


@pytest.mark.parametrize(
    ("day", "session"),
    [
        ("2013-03-01", "2013-03-01"),  # a Friday: its own session
        ("2013-03-03", "2013-03-01"),  # Sunday -> Friday
        ("2012-10-30", "2012-10-26"),  # Hurricane Sandy closed NYSE on Oct 29-30
        ("2012-12-25", "2012-12-24"),  # Christmas
    ],
)
def test_expected_session_knows_weekends_and_holidays(day: str, session: str) -> None:
    got = suite.expected_session(dt.date.fromisoformat(day), "XNYS")
    assert got == pd.Timestamp(session)


def test_freshness_fails_when_newest_bar_is_stale(cfg: Config, sample_bars: pd.DataFrame) -> None:
    stale = sample_bars[sample_bars["Date"] <= "2013-02-26"]
    params = suite.suite_params(cfg, dt.date(2013, 3, 1))
    report = suite.validate_bars(stale, params, daily=True)
    assert [f.rule for f in report.failures] == ["freshness"]
    assert suite.validate_bars(sample_bars, params, daily=True).success


def test_daily_run_publishes_then_is_idempotent(cfg: Config) -> None:
    day = dt.date(2013, 3, 1)
    raw = ingest.run(cfg, "GOOG", day)["raw_path"]
    out = validate.run(cfg, "GOOG", day, raw)
    assert out["rows"] == 2148 and out["last_date"] == "2013-03-01"
    assert Path(out["data_docs"]).is_file()
    table = store.read_curated(cfg, "GOOG")
    again = validate.run(cfg, "GOOG", day, ingest.run(cfg, "GOOG", day)["raw_path"])
    assert again["revisions"] == 0 and store.read_curated(cfg, "GOOG").equals(table)


def test_failed_pull_is_quarantined_and_curated_untouched(cfg: Config) -> None:
    good_day, bad_day = dt.date(2013, 2, 28), dt.date(2013, 3, 1)
    validate.run(cfg, "GOOG", good_day, ingest.run(cfg, "GOOG", good_day)["raw_path"])
    before = cfg.layout.curated_path("GOOG").read_bytes()
    raw = Path(ingest.run(cfg, "GOOG", bad_day)["raw_path"])
    raw.write_text(raw.read_text().replace("2013-03-01,", "2013-03-01,-").rstrip() + "\n")
    with pytest.raises(validate.ValidationFailed, match="positive_prices") as err:
        validate.run(cfg, "GOOG", bad_day, str(raw))
    assert "quarantine" in str(err.value)
    where = cfg.state / "quarantine" / "GOOG" / bad_day.isoformat()
    assert (where / "report.json").is_file() and (where / raw.name).is_file()
    assert not raw.exists()  # the next run pulls afresh
    assert cfg.layout.curated_path("GOOG").read_bytes() == before


def test_backfill_of_an_earlier_day_after_a_later_one(cfg: Config) -> None:
    late, early = dt.date(2013, 3, 1), dt.date(2012, 6, 1)
    validate.run(cfg, "GOOG", late, ingest.run(cfg, "GOOG", late)["raw_path"])
    out = validate.run(cfg, "GOOG", early, ingest.run(cfg, "GOOG", early)["raw_path"])
    assert out["last_date"] == "2012-06-01"  # judged on what that day could see
    assert store.read_curated(cfg, "GOOG")["Date"].max() == pd.Timestamp("2013-03-01")


UNIVERSE = sorted(p.stem for p in ingest.SAMPLE_DIR.glob("*.csv"))


@pytest.mark.parametrize("ticker", UNIVERSE)
def test_the_embedded_universe_passes_in_full_once_adjusted(cfg: Config, ticker: str) -> None:
    report = suite.validate_file(ingest.sample_path(ticker), cfg)
    assert report.success, report.summary()


def test_a_split_without_adjustment_is_refused_naming_the_day_and_ratio(
    cfg: Config, tmp_path: Path
) -> None:
    raw = pd.read_csv(ingest.sample_path("MSFT")).drop(columns="Adj Close")
    report = suite.validate_file(_write(raw, tmp_path / "MSFT.csv"), cfg)
    assert [f.rule for f in report.failures] == ["unadjusted_split"]
    assert "2003-02-18 (apparent 2:1 split" in report.summary()


def test_a_real_crash_is_not_taken_for_a_split(cfg: Config, tmp_path: Path) -> None:
    """AAPL fell 52 % on 2000-09-29: not a data error. Its two real 2:1 splits, unadjusted,
    are refused; the crash day is not among them."""
    raw = pd.read_csv(ingest.sample_path("AAPL")).drop(columns="Adj Close")
    report = suite.validate_file(_write(raw, tmp_path / "AAPL.csv"), cfg)
    text = report.summary()
    assert "2000-06-21 (apparent 2:1" in text and "2005-02-28 (apparent 2:1" in text
    assert "2000-09-29" not in text
