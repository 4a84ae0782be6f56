"""The OHLCV bar schema and a strict CSV parser shared by ingest, validation and serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COLUMNS = ["Date", "Open", "High", "Low", "Close", "Volume"]
PRICE_COLUMNS = ["Open", "High", "Low", "Close"]
NUMBER_COLUMNS = [*PRICE_COLUMNS, "Volume"]


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


def _sample(values: pd.Series, limit: int = 3) -> str:
    shown = [f"row {i}: {v!r}" for i, v in values.head(limit).items()]
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(shown) + more


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
    out = raw[COLUMNS].copy()
    out.index = pd.RangeIndex(len(out))
    dates = pd.to_datetime(out["Date"], errors="coerce", format="mixed")
    bad = dates.isna() & out["Date"].notna()
    if bad.any():
        problems.append(Problem("date_format", f"Date not a date at {_sample(out['Date'][bad])}"))
    out["Date"] = dates.dt.tz_localize(None) if dates.dt.tz is not None else dates
    out["Date"] = out["Date"].astype("datetime64[ns]")
    for col in NUMBER_COLUMNS:
        nums = pd.to_numeric(out[col], errors="coerce")
        bad = nums.isna() & out[col].notna()
        if bad.any():
            problems.append(Problem("numeric", f"{col} not a number at {_sample(out[col][bad])}"))
        out[col] = nums.astype("float64")
    if problems:
        raise BarsError(problems)
    return out


def read_bars_csv(path: str | Path) -> pd.DataFrame:
    """Read an OHLCV CSV strictly: every cell is kept as text until coerce_bars types it."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True)
    except FileNotFoundError:
        raise BarsError([Problem("file", f"{path}: no such file")]) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BarsError([Problem("file", f"{path}: not a readable CSV ({exc})")]) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    return coerce_bars(raw)


def write_bars_csv(bars: pd.DataFrame, path: Path) -> None:
    """Write atomically so a crash never leaves half a file that later runs trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    bars[COLUMNS].to_csv(tmp, index=False, date_format="%Y-%m-%d")
    tmp.replace(path)
