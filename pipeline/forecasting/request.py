"""What a request to the model must be, checked whole, fast when it is well formed.

Columns, types, dates in order and unique, prices > 0: in Arrow and NumPy for a plain
request (in a server each NumPy call costs about 10 us, caches going cold between
requests, so the path makes few), and through check_bars, which words every refusal,
for anything else. A request may carry the vendor's Adj Close: it is then adjusted as
training's bars are (pipeline.data.bars.adjust). The answer's prices are refused the
same way when they are not finite numbers (finite_price).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.data.bars import ADJ_CLOSE, COLUMNS, FIRST_DAY, LAST_DAY, NUMBER_COLUMNS, parse_dates

SHOWN_CHARS = 40  # how much of a bad value a refusal quotes back
TOO_EXTREME = (
    "prices or volumes too extreme to forecast from: the last window's features or the "
    "forecast are not finite numbers (check for a misplaced decimal point)"
)


class BadInput(MlflowException):
    """Refused request: a 400 from the scoring server, with what is wrong."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def shown(values: Iterable[Any], limit: int = SHOWN_CHARS) -> list[Any]:
    """Values to quote back in a message, each cut to `limit` characters."""
    out: list[Any] = []
    for value in values:
        text = value if isinstance(value, str) else str(value)
        out.append(value if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)")
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return float("inf")
    except (TypeError, ValueError):
        return float("nan")


def _numbers(column: pd.Series) -> np.ndarray:
    """Floats; NaN where a cell is missing or not a number."""
    try:
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    except (TypeError, ValueError, OverflowError):  # e.g. an integer beyond float range
        return np.array([_number(v) for v in column], dtype="float64")


def _dates(raw: pd.Series) -> pd.Series:
    """The day each cell names (the bars' own rule: bars.parse_dates, as in training), or
    BadInput quoting the (truncated) values that are not such a day."""
    days = parse_dates(raw)
    bad = days.isna().to_numpy()
    if not bad.any():
        return days
    try:  # an ISO date the rule refuses for its year: say so
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = pd.to_datetime(raw[bad], errors="coerce", format="ISO8601")
        stamps = stamps.dt.tz_localize(None) if stamps.dt.tz is not None else stamps
        outside = ((stamps < FIRST_DAY) | (stamps > LAST_DAY)).to_numpy()
    except (ValueError, TypeError, OverflowError, AttributeError):  # mixed offsets, objects
        outside = np.zeros(int(bad.sum()), dtype=bool)
    if outside.all():
        raise BadInput(
            f"Date must be between {FIRST_DAY:%Y-%m-%d} and {LAST_DAY:%Y-%m-%d}; "
            f"out of range: {shown(raw[bad].head(3))}"
        )
    unreadable = raw[bad][~outside]
    raise BadInput(f"Date must be YYYY-MM-DD; unreadable: {shown(unreadable.head(3))}")


def check_bars(frame: pd.DataFrame, needed: int, max_rows: int = 100_000) -> pd.DataFrame:
    """Type and check request rows; raise BadInput saying exactly what is wrong.

    Values quoted back are cut to SHOWN_CHARS each, so a message stays short
    whatever was sent.
    """
    if not isinstance(frame, pd.DataFrame):
        raise BadInput(f"expected a table of daily bars with columns {COLUMNS}")
    repeated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if repeated:
        raise BadInput(f"column(s) {shown(repeated[:3])} sent more than once; send {COLUMNS}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise BadInput(f"missing column(s) {missing}; send {COLUMNS}")
    if len(frame) < needed:
        raise BadInput(
            f"{len(frame)} row(s) sent; this model needs at least {needed} "
            "consecutive daily bars (its window plus feature warm-up)"
        )
    if len(frame) > max_rows:
        raise BadInput(
            f"{len(frame)} rows sent; at most {max_rows} accepted: send the most "
            f"recent ones (this model uses the last {needed})"
        )
    dates = _dates(frame["Date"].reset_index(drop=True))
    columns = {"Date": dates.to_numpy()}
    for col in NUMBER_COLUMNS:
        nums = _numbers(frame[col])
        if np.isnan(nums).any():
            days = dates[np.isnan(nums)].dt.strftime("%Y-%m-%d").head(3).tolist()
            raise BadInput(f"{col} must be a number on every row; missing or text on {days}")
        if np.isinf(nums).any():
            days = dates[np.isinf(nums)].dt.strftime("%Y-%m-%d").head(3).tolist()
            raise BadInput(f"{col} must be a finite number; infinite on {days}")
        columns[col] = nums
    bars = pd.DataFrame(columns)
    if bars["Date"].duplicated().any():
        dup = bars["Date"][bars["Date"].duplicated()].dt.strftime("%Y-%m-%d").head(3).tolist()
        raise BadInput(f"duplicate dates {dup}: send one row per day")
    if not bars["Date"].is_monotonic_increasing:
        raise BadInput("dates must be in increasing order, oldest first")
    if (bars[["Open", "High", "Low", "Close"]] <= 0).any().any() or (bars["Volume"] < 0).any():
        raise BadInput("prices must be > 0 and Volume >= 0")
    return bars.reset_index(drop=True)


FIRST_ORDINAL = int(FIRST_DAY.to_datetime64().astype("datetime64[D]").astype("int64"))
LAST_ORDINAL = int(LAST_DAY.to_datetime64().astype("datetime64[D]").astype("int64"))


def _ordered_days(values: Any) -> np.ndarray | None:
    """A column of plain YYYY-MM-DD strings, oldest first, each day once and within
    FIRST_DAY..LAST_DAY, as datetime64[D]; None for anything else (check_bars then reads
    it and words what is wrong).

    Arrow's string -> date32 cast takes exactly that form (ten characters, a real day of a
    real month) and refuses the rest; the Date column MLflow builds from JSON is already
    Arrow-backed. The days are checked as the int32 day numbers the cast writes.
    """
    try:
        strings = pa.array(values)
        if isinstance(strings, pa.ChunkedArray):  # a frame pandas concatenated
            strings = strings.combine_chunks()
        if not pa.types.is_string(strings.type) and not pa.types.is_large_string(strings.type):
            return None  # numbers, timestamps, mixed objects: check_bars words them
        if strings.null_count:
            return None
        days = strings.cast(pa.date32())
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None  # 2020-02-30, 2020-1-2, " 2020-01-02", and the like
    ordinals = np.frombuffer(days.buffers()[1], np.int32, len(days), days.offset * 4)
    if not (np.diff(ordinals) > 0).all():  # in order, no repeats: first and last bound all
        return None
    if ordinals[0] < FIRST_ORDINAL or ordinals[-1] > LAST_ORDINAL:
        return None
    return ordinals.astype("datetime64[D]")


def _sound_numbers(columns: list[Any]) -> np.ndarray | None:
    """Open..Volume columns as one (n, 5) float array when every price is a finite number
    > 0 and every volume one >= 0; None otherwise (or when they are not numbers at all)."""
    try:
        block = np.array(columns, dtype="float64")  # (5, n)
    except (TypeError, ValueError, OverflowError):
        return None
    # a row's min is NaN if any cell is (so is every comparison with it); max finds +inf
    low, high = block.min(axis=1).tolist(), block.max(axis=1).tolist()
    if all(x > 0 for x in low[:4]) and low[4] >= 0 and max(high) < math.inf:
        return block.T
    return None


def _plain_columns(frame: Any, needed: int, max_rows: int) -> list[str] | None:
    """The column names of a DataFrame of an accepted length with each column once, every
    needed one there; None for anything else."""
    if not isinstance(frame, pd.DataFrame) or not needed <= len(frame) <= max_rows:
        return None
    names = list(frame.columns)  # a set of a few names: Index.is_unique hashes afresh
    return names if len(set(names)) == len(names) and set(COLUMNS) <= set(names) else None


def _column(frame: pd.DataFrame, position: int) -> Any:
    """A column's values without a Series around them: pandas builds one for each
    `frame[name]` (about 15 us, more than the numbers cost here). A private pandas method,
    pinned by the lock; tests/unit/test_forecaster.py fails if an upgrade removes it."""
    return frame._get_column_array(position)


def request_arrays(frame: Any, needed: int, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A request as (datetime64[D] days, (n, 5) OHLCV floats), every rule of check_bars
    applied. A well-formed request is checked in Arrow and NumPy, with as few calls as
    they allow (in a server, where caches go cold between requests, each costs about
    10 us); anything else goes through check_bars, which raises BadInput with its
    message (or reads it the slow way)."""
    names = _plain_columns(frame, needed, max_rows)
    if names is not None:
        days = _ordered_days(_column(frame, names.index("Date")))
        if days is not None:
            ohlcv = _sound_numbers([_column(frame, names.index(c)) for c in NUMBER_COLUMNS])
            if ohlcv is not None:
                return days, _adjusted(frame, names, ohlcv)
    bars = check_bars(frame, needed, max_rows)
    days, ohlcv = bars["Date"].to_numpy(dtype="datetime64[D]"), bars[NUMBER_COLUMNS].to_numpy()
    return days, _adjusted(frame, list(frame.columns), ohlcv)


def _adjusted(frame: Any, names: list[str], ohlcv: np.ndarray) -> np.ndarray:
    """Bars as traded, or, when the request carries the vendor's Adj Close, adjusted as in
    training (pipeline.data.bars.adjust): a split inside the window is then no fall."""
    if ADJ_CLOSE not in names:
        return ohlcv
    try:
        factor = np.array(_column(frame, names.index(ADJ_CLOSE)), dtype="float64") / ohlcv[:, 3]
    except (TypeError, ValueError):
        factor = np.array([np.nan])
    if not (np.isfinite(factor).all() and (factor > 0).all()):
        raise BadInput(f"{ADJ_CLOSE} must be a number > 0 on every row (or leave it out)")
    relative = factor / factor[-1]
    out = ohlcv.copy()
    out[:, :4] *= relative[:, None]
    out[:, 4] /= relative
    return out


def finite_price(close: float, log_return: float) -> float:
    """close * exp(log_return), or BadInput when that is not a finite number (plain floats:
    for one row NumPy's calls cost more than the arithmetic)."""
    try:
        price = close * math.exp(log_return)
    except OverflowError:
        price = math.inf
    if not math.isfinite(price):
        raise BadInput(TOO_EXTREME)
    return price
