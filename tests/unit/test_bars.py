from pathlib import Path

import pandas as pd
import pytest

from pipeline.data import bars
from pipeline.data.bars import (
    COLUMNS,
    BarsError,
    Problem,
    coerce_bars,
    read_bars_csv,
    write_bars_csv,
)


def _raw(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Date": [f"2020-01-0{d}" for d in range(1, n + 1)],
            "Open": ["1.0"] * n,
            "High": ["2"] * n,
            "Low": ["0.5"] * n,
            "Close": ["1.5"] * n,
            "Volume": ["100"] * n,
        }
    )


def _problems(raw: pd.DataFrame) -> list[Problem]:
    with pytest.raises(BarsError) as err:
        coerce_bars(raw)
    return err.value.problems


def test_coerce_types_the_bars() -> None:
    bars = coerce_bars(_raw().assign(Extra="x")[["Extra", *reversed(COLUMNS)]])
    assert list(bars.columns) == COLUMNS
    assert bars["Date"].dtype == "datetime64[ns]" and (bars.dtypes[1:] == "float64").all()
    assert bars["Volume"].tolist() == [100.0] * 3


def test_a_missing_column_and_no_rows_are_named() -> None:
    assert _problems(_raw().drop(columns=["Volume", "Low"])) == [
        Problem("columns", f"missing column(s) ['Low', 'Volume']; need {COLUMNS}")
    ]
    assert [p.rule for p in _problems(_raw().iloc[:0])] == ["rows"]


def test_every_bad_cell_is_named_with_its_row() -> None:
    raw = _raw(5)
    raw.loc[1, "Date"] = "2020-13-45"
    raw.loc[[0, 2, 3, 4], "Close"] = "n/a"
    raw.loc[2, "Volume"] = "lots"
    problems = _problems(raw)
    assert [p.rule for p in problems] == ["date_format", "numeric", "numeric"]
    assert problems[0].detail == f"Date not a date at row 1: '2020-13-45'; {bars.DATE_RULE}"
    assert problems[1].detail.startswith("Close not a number at row 0: 'n/a'")
    assert problems[1].detail.endswith("row 3: 'n/a' (+1 more)")
    assert problems[2].detail == "Volume not a number at row 2: 'lots'"
    assert str(problems[2]) == "FAIL numeric: Volume not a number at row 2: 'lots'"


def test_empty_cells_stay_missing_for_the_null_rule() -> None:
    raw = _raw().astype(object)
    raw.loc[1, "Close"] = None
    assert coerce_bars(raw)["Close"].isna().tolist() == [False, True, False]


def test_tz_aware_dates_keep_their_local_day() -> None:
    """yfinance sends New York midnights with an offset: the bar's day is the local one."""
    stamps = ["2020-01-01T00:00:00-05:00", "2020-01-02T00:00:00-05:00", "2020-01-03T00:00:00-05:00"]
    for dates in (stamps, pd.to_datetime(stamps)):
        bars = coerce_bars(_raw().assign(Date=dates))
        assert bars["Date"].dtype == "datetime64[ns]"  # naive
        assert bars["Date"].tolist() == list(pd.date_range("2020-01-01", periods=3))


def test_mixed_daylight_saving_offsets_keep_each_bars_local_day() -> None:
    """Real New York stamps switch -05:00 -> -04:00 in March: one series, two offsets."""
    stamps = ["2024-03-08 00:00:00-05:00", "2024-03-11 00:00:00-04:00", "2024-03-12T00:00:00Z"]
    bars = coerce_bars(_raw().assign(Date=stamps))
    assert bars["Date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-03-08",
        "2024-03-11",
        "2024-03-12",
    ]


@pytest.mark.parametrize(
    "cell", ["13/01/2020", "01/02/2020", "2020/01/02", "Jan 2 2020", "9999-01-01", "2262-05-01"]
)
def test_non_iso_and_out_of_range_dates_are_refused_not_guessed(cell: str) -> None:
    raw = _raw()
    raw.loc[1, "Date"] = cell
    [problem] = _problems(raw)
    assert problem.rule == "date_format"
    assert repr(cell) in problem.detail and "YYYY-MM-DD" in problem.detail


def test_a_huge_cell_is_quoted_short() -> None:
    raw = _raw()
    raw.loc[0, "Date"] = "x" * 1_000_000
    [problem] = _problems(raw)
    assert len(str(problem)) < 300 and "..." in problem.detail


def test_read_names_the_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(BarsError, match="is a directory") as err:
        read_bars_csv(tmp_path)
    assert err.value.problems[0].rule == "file"
    with pytest.raises(BarsError, match="no such file") as err:
        read_bars_csv(tmp_path / "absent.csv")
    assert err.value.problems[0].rule == "file"
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BarsError, match="not a readable CSV"):
        read_bars_csv(tmp_path / "bin.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BarsError, match=r"empty\.csv: not a readable CSV"):
        read_bars_csv(tmp_path / "empty.csv")


def test_read_strips_header_and_cell_padding(tmp_path: Path) -> None:
    path = tmp_path / "padded.csv"
    path.write_text(" Date, Open,High,Low,Close,Volume\n2020-01-01, 1,2,0.5,1.5,100\n")
    bars = read_bars_csv(path)
    assert list(bars.columns) == COLUMNS and bars["Open"].iloc[0] == 1.0


def test_write_then_read_round_trips(tmp_path: Path, sample_bars: pd.DataFrame) -> None:
    path = tmp_path / "deep" / "GOOG.csv"
    write_bars_csv(sample_bars.assign(Extra=1), path)
    assert not path.with_suffix(".csv.tmp").exists()
    pd.testing.assert_frame_equal(read_bars_csv(path), sample_bars)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_adjustment_puts_every_day_in_the_newest_days_terms() -> None:
    """A 2:1 split between day 2 and 3: the vendor's Adj Close halves days 1-2; adjusted,
    the series has no fall, the newest bar is as traded, and volume keeps its value."""
    raw = _raw(4).assign(
        Open=["100", "100", "50", "50"],
        High=["110", "110", "55", "55"],
        Low=["90", "90", "45", "45"],
        Close=["100", "102", "51", "52"],
        Volume=["10", "10", "20", "20"],
    )
    raw["Adj Close"] = ["50", "51", "51", "52"]
    got = coerce_bars(raw[["Adj Close", *reversed(COLUMNS)]])  # read by name, any order
    assert list(got.columns) == COLUMNS and got.attrs[bars.ADJUSTED]
    assert got["Close"].tolist() == [50.0, 51.0, 51.0, 52.0]
    assert got["Open"].tolist() == [50.0, 50.0, 50.0, 50.0]
    assert got["Volume"].tolist() == [20.0, 20.0, 20.0, 20.0]


def test_a_factor_that_cannot_be_computed_is_refused() -> None:
    raw = _raw().assign(**{"Adj Close": ["1.5", "0", "1.5"]})
    assert [p.rule for p in _problems(raw)] == ["adjustment"]


def test_no_adjustment_column_leaves_bars_as_traded() -> None:
    assert not coerce_bars(_raw()).attrs.get(bars.ADJUSTED)


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("Date,Open,High,Low,Close,Volume,Close\n2020-01-01,1,2,0.5,1.5,100,9\n")
    with pytest.raises(BarsError) as err:
        read_bars_csv(path)
    assert err.value.problems[0].rule == "columns"
    assert "['Close'] more than once" in str(err.value)
