from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import actions, ingest
from pipeline.data.actions import ActionsError, apply_splits, load_splits
from pipeline.data.bars import read_bars_csv

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "corporate_actions.csv"
SPLIT_DAY = pd.Timestamp("2014-08-07")


@pytest.fixture(scope="module")
def disca() -> pd.DataFrame:
    """DISCA's real bars around its unadjusted 2:1 share dividend of 2014-08-07."""
    bars = read_bars_csv(ingest.sample_path("DISCA", "sp500"))
    return bars[(bars["Date"] >= "2014-07-01") & (bars["Date"] <= "2014-09-30")]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "actions.csv"
    path.write_text(text)
    return path


def test_the_example_file_loads_as_disca_s_2_for_1(make_cfg) -> None:
    splits = load_splits(make_cfg(source__actions_file=str(EXAMPLE)))
    assert splits == {"DISCA": [(SPLIT_DAY, 2.0)]}
    assert load_splits(make_cfg()) == {}  # no file configured


def test_after_the_split_disca_s_move_that_day_is_a_normal_one(
    make_cfg, disca: pd.DataFrame
) -> None:
    moves = np.log(disca["Close"] / disca["Close"].shift())
    assert moves[disca["Date"] == SPLIT_DAY].item() < -0.69  # as shipped: -51 %
    splits = load_splits(make_cfg(source__actions_file=str(EXAMPLE)))["DISCA"]
    fixed = apply_splits(disca, splits)
    moves = np.log(fixed["Close"] / fixed["Close"].shift())
    assert abs(moves[fixed["Date"] == SPLIT_DAY].item()) < 0.02  # 41.51 -> 40.975
    assert moves.abs().max() < 0.1  # no day of the quarter moves 10 % any more
    before, after = disca["Date"] < SPLIT_DAY, disca["Date"] >= SPLIT_DAY
    assert np.allclose(fixed.loc[before, "Open"], disca.loc[before, "Open"] / 2)
    assert np.allclose(fixed.loc[before, "Volume"], disca.loc[before, "Volume"] * 2)
    assert fixed.loc[after].equals(disca.loc[after])  # from the split day on: as traded
    assert disca.loc[disca["Date"] == "2014-08-06", "Close"].item() == 83.02  # input unchanged


def test_splits_compound_and_a_future_one_is_not_seen_yet() -> None:
    bars = pd.DataFrame(
        {
            "Date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]),
            **{c: [12.0, 6.0, 2.0] for c in ("Open", "High", "Low", "Close")},
            "Volume": [100.0, 200.0, 600.0],
        }
    )
    splits = [
        (pd.Timestamp("2020-01-03"), 2.0),
        (pd.Timestamp("2020-01-06"), 3.0),
        (pd.Timestamp("2020-02-03"), 10.0),  # after the newest bar: not yet
    ]
    out = apply_splits(bars, splits)
    assert out["Close"].tolist() == [2.0, 2.0, 2.0]
    assert out["Volume"].tolist() == [600.0, 600.0, 600.0]
    assert apply_splits(bars, []).equals(bars)


def test_a_file_in_yfinance_s_shape_without_dividends(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Date,Ticker,Stock Splits\n"
        "2020-08-31 00:00:00-04:00,AAPL,4.0\n"
        "2014-06-09,AAPL,7\n"
        "\n"
        "2019-05-01,BF.B,0\n"  # no split: a dividend-only row
        "2019-05-02,TSLA,\n",
    )
    assert actions.read_actions(path) == {
        "AAPL": [(pd.Timestamp("2014-06-09"), 7.0), (pd.Timestamp("2020-08-31"), 4.0)]
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Date,Ticker\n2014-08-07,DISCA\n", "missing column(s) ['Stock Splits']"),
        ("Date,Ticker,Stock Splits\n2014-08-07,DISCA,two\n", "line 2, column 'Stock Splits'"),
        ("Date,Ticker,Stock Splits\n2014-08-07,DISCA,-2\n", "line 2, column 'Stock Splits'"),
        ("Date,Ticker,Stock Splits\n\n07/08/2014,DISCA,2\n", "line 3, column 'Date'"),
        ("Date,Ticker,Stock Splits\n2014-08-07,../x,2\n", "line 2, column 'Ticker': ticker"),
        (
            "Date,Ticker,Dividends,Stock Splits\n2014-08-07,DISCA,lots,2\n",
            "line 2, column 'Dividends'",
        ),
        (
            "Date,Ticker,Stock Splits\n2014-08-07,DISCA,2\n2014-08-07,DISCA,2\n",
            "line 3: a second split of DISCA on 2014-08-07 (line 2 has one)",
        ),
    ],
)
def test_a_bad_row_is_refused_naming_file_line_and_column(
    tmp_path: Path, text: str, says: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ActionsError) as err:
        actions.read_actions(path)
    assert str(path) in str(err.value) and says in str(err.value)


def test_a_missing_file_is_a_config_error(make_cfg, tmp_path: Path) -> None:
    from pipeline.config import ConfigError

    cfg = make_cfg(source__actions_file=str(tmp_path / "none.csv"))
    with pytest.raises(ConfigError, match=r"source.actions_file .*none\.csv: no such file"):
        load_splits(cfg)
