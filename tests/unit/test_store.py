import datetime as dt
import json
from pathlib import Path

import pandas as pd

from pipeline.config import Config
from pipeline.data import store
from pipeline.data.bars import COLUMNS

DAY = dt.date(2013, 3, 1)


def test_merge_appends_dedupes_and_reports_revisions(sample_bars: pd.DataFrame) -> None:
    curated = sample_bars.iloc[:10]
    pull = sample_bars.iloc[5:15].copy()
    pull.loc[pull.index[0], "Close"] += 1.0  # the vendor corrected an old bar
    merged, revisions = store.merge_bars(curated, pull)
    assert len(merged) == 15 and merged["Date"].is_unique
    assert revisions[["column"]].to_dict("records") == [{"column": "Close"}]
    assert revisions["new"].iloc[0] == revisions["old"].iloc[0] + 1.0
    same, none = store.merge_bars(merged, pull)
    assert same.equals(merged) and none.empty


def test_merge_ignores_float_noise_and_keeps_date_order(sample_bars: pd.DataFrame) -> None:
    curated = sample_bars.iloc[5:10]
    pull = sample_bars.iloc[:8].copy()
    pull["Open"] *= 1 + 1e-12  # a round trip through text, not a revision
    merged, revisions = store.merge_bars(curated, pull)
    assert revisions.empty and list(merged.columns) == COLUMNS
    assert merged["Date"].tolist() == sample_bars["Date"].iloc[:10].tolist()


def test_read_curated_before_any_publish_is_an_empty_typed_table(cfg: Config) -> None:
    empty = store.read_curated(cfg, "GOOG")
    assert empty.empty and list(empty.columns) == COLUMNS
    assert empty["Date"].dtype.kind == "M" and empty["Close"].dtype == "float64"


def test_publish_then_read_until_a_day(cfg: Config, sample_bars: pd.DataFrame) -> None:
    path = store.publish_curated(cfg, "GOOG", sample_bars, pd.DataFrame(), DAY)
    assert path == cfg.layout.curated_path("GOOG") and not path.with_suffix(".parquet.tmp").exists()
    assert store.read_curated(cfg, "GOOG").equals(sample_bars)
    seen = store.read_curated(cfg, "GOOG", until=dt.date(2010, 1, 9))
    assert seen["Date"].max() == pd.Timestamp("2010-01-08") and seen.index[-1] == len(seen) - 1
    assert not cfg.layout.revisions_path("GOOG").exists()  # no revisions, no log


def test_revisions_are_appended_to_a_log(cfg: Config, sample_bars: pd.DataFrame) -> None:
    curated = sample_bars.iloc[:10]
    for day, bump in ((DAY, 1.0), (DAY + dt.timedelta(days=3), 2.0)):
        pull = sample_bars.iloc[8:10].copy()
        pull.loc[pull.index[0], "Volume"] += bump
        merged, revisions = store.merge_bars(curated, pull)
        store.publish_curated(cfg, "GOOG", merged, revisions, day)
    log = pd.read_csv(cfg.layout.revisions_path("GOOG"))
    assert list(log.columns) == ["Date", "column", "old", "new", "run_day"]
    assert log["run_day"].tolist() == ["2013-03-01", "2013-03-04"]
    assert (log["new"] - log["old"]).tolist() == [1.0, 2.0]


def test_quarantine_moves_the_pull_aside_with_its_report(cfg: Config, tmp_path: Path) -> None:
    raw = tmp_path / "2013-03-01.csv"
    raw.write_text("Date\n")
    where = store.quarantine(cfg, "GOOG", DAY, raw, {"failures": ["FAIL rows: no rows"]})
    assert where == cfg.layout.quarantine_dir("GOOG", DAY)
    assert not raw.exists() and (where / raw.name).read_text() == "Date\n"
    assert json.loads((where / "report.json").read_text()) == {"failures": ["FAIL rows: no rows"]}
    again = store.quarantine(cfg, "GOOG", DAY, raw, {"failures": []})  # raw already gone
    assert json.loads((again / "report.json").read_text()) == {"failures": []}


def test_a_rebased_adjustment_is_one_revision_and_moves_older_bars_too() -> None:
    """A dividend re-bases every adjusted price by one factor: the stored bars older than
    the pull move with it (no fake jump), and the log says so once."""
    from pipeline.data.store import merge_bars

    days = pd.date_range("2020-01-01", periods=4)
    old = pd.DataFrame(
        {"Date": days, "Open": 10.0, "High": 11.0, "Low": 9.0, "Close": 10.0, "Volume": 100.0}
    )
    pull = old.iloc[2:].copy()
    pull[["Open", "High", "Low", "Close"]] *= 0.99
    pull["Volume"] /= 0.99
    merged, revisions = merge_bars(old, pull)
    assert merged["Close"].round(9).tolist() == [9.9] * 4
    assert revisions[["column", "new"]].values.tolist() == [["adjustment", 0.99]]
