"""Property tests: whatever bytes or bars `pipeline validate` is given, it answers with its
contract (exit 0 or 1, one OK line or FAIL lines) and never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.data.bars import COLUMNS

LINE = re.compile(r"^(OK .+: \d+ expectations passed|FAIL [a-z_]+: .+)$")
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ODD_CELLS = [
    "",
    " ",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1",
    "0",
    "1,5",
    "abc",
    "13/01/2020",
    "2020-02-30",
    "9999-01-01",
    "2024-03-08 00:00:00-05:00",
    "2024-03-11T00:00:00-04:00",
    "'; DROP TABLE bars; --",
    "x" * 5000,
    "\u00e9\u20ac",
]


def _check_contract(path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    code = main(["validate", str(path)])
    out = capsys.readouterr().out
    assert code in (0, 1)
    lines = out.splitlines()
    assert lines and all(LINE.match(line) for line in lines), out[:2000]
    assert (code == 0) == lines[0].startswith("OK ")
    assert all(len(line) < 2000 for line in lines)  # input is quoted short, never whole
    return code


@PROPERTY
@given(data=st.binary(max_size=2000))
def test_any_bytes_get_the_validate_contract(
    data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "any.csv"
    path.write_bytes(data)
    _check_contract(path, capsys)


@PROPERTY
@given(
    rows=st.lists(
        st.lists(st.sampled_from(ODD_CELLS) | st.text(max_size=12), min_size=6, max_size=6),
        min_size=0,
        max_size=8,
    ),
    header=st.permutations(COLUMNS) | st.lists(st.sampled_from([*COLUMNS, "X", ""]), max_size=7),
)
def test_any_table_of_text_gets_the_validate_contract(
    rows: list[list[str]], header: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "table.csv"
    width = len(header)
    pd.DataFrame([r[:width] + [""] * (width - len(r)) for r in rows], columns=header).to_csv(
        path, index=False
    )
    _check_contract(path, capsys)


@PROPERTY
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 259), st.sampled_from(COLUMNS), st.sampled_from(ODD_CELLS)),
        max_size=3,
    )
)
def test_real_bars_with_a_few_odd_cells_get_the_validate_contract(
    edits: list[tuple[int, str, str]],
    sample_bars: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Mostly real data, so the GX suite itself runs (not only the parser)."""
    table = sample_bars.tail(260).reset_index(drop=True)
    text = table.assign(Date=table["Date"].dt.strftime("%Y-%m-%d")).astype(str)
    for row, col, value in edits:
        text.loc[row, col] = value
    path = tmp_path / "bars.csv"
    text.to_csv(path, index=False)
    code = _check_contract(path, capsys)
    if not edits:
        assert code == 0  # the real series itself passes
