"""The OHLCV bar schema and a strict CSV parser shared by ingest, validation and serving."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["Date", "Open", "High", "Low", "Close", "Volume"]
PRICE_COLUMNS = ["Open", "High", "Low", "Close"]
NUMBER_COLUMNS = [*PRICE_COLUMNS, "Volume"]
# The vendor's split- and dividend-adjusted close (yfinance with auto_adjust=False, Quandl,
# most CSV exports). Optional: when present, Adj Close / Close is each day's adjustment factor.
ADJ_CLOSE = "Adj Close"
ADJUSTED = "adjusted"  # frame.attrs key: True when the bars were adjusted by the vendor's factor
# ISO 8601 only: 2024-03-08, optionally with a time and a UTC offset as vendors write it
# (2024-03-08 00:00:00-05:00). 08/03/2024 is refused rather than guessed: day-first and
# month-first readings of it differ, and a misread date corrupts the series silently.
DATE_RULE = "dates are written YYYY-MM-DD, 1900 to 2200 (a time and UTC offset may follow)"
_ISO_DATE = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
FIRST_DAY, LAST_DAY = pd.Timestamp("1900-01-01"), pd.Timestamp("2200-12-31")


@dataclass(frozen=True)
class Problem:
    """One reason a table is unusable; `rule` is stable for tools that parse our output."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"FAIL {self.rule}: {self.detail}"


class BarsError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def shorten(value: object, width: int = 40) -> str:
    """repr(value), cut to `width` characters: messages quote input, never all of it."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _sample(values: pd.Series, limit: int = 3) -> str:
    shown = [f"row {i}: {shorten(v)}" for i, v in values.head(limit).items()]
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(shown) + more


def parse_dates(values: pd.Series) -> pd.Series:
    """The calendar day each cell names, as datetime64[ns]; NaT where it is not an ISO date
    between FIRST_DAY and LAST_DAY. The day is the one written, whatever the offset: a New
    York bar stamped 2024-03-08 00:00:00-05:00 is the 8 March session (offsets change with
    daylight saving, so converting to one zone would shift some bars to the day before)."""
    text = values.astype("string").str.strip()
    iso = text.str.fullmatch(_ISO_DATE.pattern).fillna(False).astype(bool)
    days = pd.to_datetime(text.where(iso).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    days = days.where((days >= FIRST_DAY) & (days <= LAST_DAY))
    return days.astype("datetime64[ns]")


def coerce_bars(raw: pd.DataFrame) -> pd.DataFrame:
    """Type a frame of strings/objects into bars; raise BarsError listing every bad cell."""
    problems: list[Problem] = []
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        problems.append(Problem("columns", f"missing column(s) {missing}; need {COLUMNS}"))
    if raw.empty:
        problems.append(Problem("rows", "no rows"))
    if problems:
        raise BarsError(problems)
    adjustable = ADJ_CLOSE in raw.columns
    out = raw[[*COLUMNS, ADJ_CLOSE] if adjustable else COLUMNS].copy()
    out.index = pd.RangeIndex(len(out))
    dates = parse_dates(out["Date"])
    bad = dates.isna() & out["Date"].notna()
    if bad.any():
        problems.append(
            Problem(
                "date_format",
                f"Date not a date at {_sample(out['Date'][bad])}; {DATE_RULE}",
            )
        )
    out["Date"] = dates
    for col in [*NUMBER_COLUMNS, ADJ_CLOSE] if adjustable else NUMBER_COLUMNS:
        nums = pd.to_numeric(out[col], errors="coerce")
        bad = nums.isna() & out[col].notna()
        if bad.any():
            problems.append(Problem("numeric", f"{col} not a number at {_sample(out[col][bad])}"))
        out[col] = nums.astype("float64")
    if problems:
        raise BarsError(problems)
    return adjust(out) if adjustable else out


def adjust(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars in the terms of their newest day: each day's prices times its adjustment factor
    (Adj Close / Close) over the newest day's, volume divided by it.

    So a split or a dividend never shows as a return, while the newest bar stays as traded
    (forecasts are in the prices people see). A factor that cannot be computed (a missing,
    zero or negative Adj Close or Close) is refused: guessing it would put a fake move
    into the series.
    """
    factor = bars[ADJ_CLOSE] / bars["Close"]
    bad = ~(np.isfinite(factor) & (factor > 0))
    if bad.any():
        shown = _sample(bars.loc[bad, "Date"].dt.strftime("%Y-%m-%d"))
        raise BarsError(
            [Problem("adjustment", f"{ADJ_CLOSE} / Close is not a positive number at {shown}")]
        )
    relative = (factor / factor.iloc[-1]).to_numpy()
    out = bars[COLUMNS].copy()
    out[PRICE_COLUMNS] = out[PRICE_COLUMNS].to_numpy() * relative[:, None]
    out["Volume"] = out["Volume"] / relative
    out.attrs[ADJUSTED] = True
    return out


def duplicated_columns(columns: list[str]) -> list[str]:
    """Header names that appear more than once: which one holds the prices is ambiguous."""
    return sorted({c for c in columns if columns.count(c) > 1})


def read_csv_text(path: str | Path, **options: object) -> pd.DataFrame:
    """Every cell as text; a path that is not a readable CSV file is a BarsError ("file")."""
    try:
        frame = pd.read_csv(path, dtype=str, **options)
        header = pd.read_csv(path, dtype=str, header=None, nrows=1, **options)
    except FileNotFoundError:
        raise BarsError([Problem("file", f"{path}: no such file")]) from None
    except IsADirectoryError:
        raise BarsError([Problem("file", f"{path}: is a directory, not a CSV file")]) from None
    except PermissionError:
        raise BarsError([Problem("file", f"{path}: not readable (permission denied)")]) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise BarsError([Problem("file", f"{path}: not a readable CSV ({detail})")]) from None
    # pandas renames a repeated name to "Close.1" and reads on: refuse instead
    twice = duplicated_columns([str(c).strip() for c in header.iloc[0].tolist()])
    if twice:
        raise BarsError(
            [Problem("columns", f"{path}: the header names {twice} more than once: ambiguous")]
        )
    return frame


def read_bars_csv(path: str | Path) -> pd.DataFrame:
    """Read an OHLCV CSV strictly: every cell is kept as text until coerce_bars types it."""
    raw = read_csv_text(path, keep_default_na=True, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    return coerce_bars(raw)


def write_bars_csv(bars: pd.DataFrame, path: Path) -> None:
    """Write atomically so a crash never leaves half a file that later runs trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    bars[COLUMNS].to_csv(tmp, index=False, date_format="%Y-%m-%d")
    tmp.replace(path)
