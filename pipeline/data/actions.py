"""Corporate actions the vendor did not adjust for: splits (and share dividends that work
like one, e.g. DISCA's 2:1 of 2014-08-07), read from `source.actions_file`.

The file has the shape yfinance's `Ticker.actions` gives, plus a ticker column:
`Date,Ticker,Dividends,Stock Splits` (Stock Splits = new shares per old share; 0 or empty
is no split; the Dividends column may be left out and is not used). `apply_splits` puts
the bars before each split in the terms of the shares after it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, ConfigError
from pipeline.data.bars import DATE_RULE, PRICE_COLUMNS, parse_dates, shorten
from pipeline.layout import BadTicker, check_ticker

REQUIRED = ["Date", "Ticker", "Stock Splits"]
Splits = dict[str, list[tuple[pd.Timestamp, float]]]


class ActionsError(ConfigError):
    """A corporate-actions file that cannot be used; the message names file, line, column."""


def apply_splits(bars: pd.DataFrame, splits: list[tuple[pd.Timestamp, float]]) -> pd.DataFrame:
    """A new frame: every bar dated before a split has its prices divided by the ratio and
    its volume multiplied by it (several splits compound). A split dated after the newest
    bar has not happened yet as far as these bars know (a replayed day must not see it,
    and the newest bar stays as traded): it is left out."""
    out = bars.copy()
    dates = out["Date"]
    newest = dates.max()
    factor = np.ones(len(out))
    for day, ratio in splits:
        if pd.isna(newest) or day > newest:
            continue
        factor[(dates < day).to_numpy()] *= ratio
    out[PRICE_COLUMNS] = out[PRICE_COLUMNS].to_numpy() / factor[:, None]
    out["Volume"] = out["Volume"].to_numpy() * factor
    return out


def _number(text: str) -> float:
    value = pd.to_numeric(text.strip() or "0", errors="coerce")
    return float(value) if pd.notna(value) and np.isfinite(value) else float("nan")


def _split(cells: dict[str, str], day: pd.Timestamp) -> tuple[str, float]:
    """(ticker, ratio) of one row; ValueError names the column of a bad cell."""
    ratio = _number(cells["Stock Splits"])
    if not ratio >= 0:
        raise ValueError(
            f"column 'Stock Splits': {shorten(cells['Stock Splits'])} is not a ratio "
            "(new shares per old: 2 for a 2:1 split, 0 or empty for none)"
        )
    if "Dividends" in cells and np.isnan(_number(cells["Dividends"])):
        raise ValueError(f"column 'Dividends': {shorten(cells['Dividends'])} is not a number")
    try:
        ticker = check_ticker(cells["Ticker"].strip())
    except BadTicker as exc:
        raise ValueError(f"column 'Ticker': {exc}") from None
    if pd.isna(day):
        raise ValueError(f"column 'Date': {shorten(cells['Date'])}; {DATE_RULE}")
    return ticker, ratio


def parse_actions(frame: pd.DataFrame, source: str) -> Splits:
    """The splits of a text frame of actions, per ticker in date order; every bad row is an
    ActionsError naming `source`, the line (the header is line 1) and the column."""
    frame = frame.rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ActionsError(f"{source}: missing column(s) {missing}; need {REQUIRED}")
    problems: list[str] = []
    splits: Splits = {}
    seen: dict[tuple[str, pd.Timestamp], int] = {}
    dates = parse_dates(frame["Date"])
    for i, row in enumerate(frame.astype(str).itertuples(index=False)):
        line, cells = i + 2, dict(zip(frame.columns, row, strict=True))
        if not any(v.strip() for v in cells.values()):
            continue  # a blank line
        try:
            ticker, ratio = _split(cells, dates.iloc[i])
        except ValueError as exc:
            problems.append(f"{source} line {line}, {exc}")
            continue
        day = dates.iloc[i]
        if ratio == 0:
            continue  # a dividend-only row
        if (ticker, day) in seen:
            problems.append(
                f"{source} line {line}: a second split of {ticker} on {day:%Y-%m-%d} "
                f"(line {seen[ticker, day]} has one); write one row with the combined ratio"
            )
            continue
        seen[ticker, day] = line
        splits.setdefault(ticker, []).append((day, ratio))
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ActionsError("; ".join(problems[:5]) + more)
    return {t: sorted(s) for t, s in sorted(splits.items())}


def read_actions(path: Path) -> Splits:
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
        )
    except FileNotFoundError:
        raise ActionsError(f"source.actions_file {path}: no such file") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ActionsError(f"source.actions_file {path}: {exc.strerror}") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise ActionsError(f"source.actions_file {path}: not a readable CSV ({detail})") from None
    return parse_actions(frame, str(path))


def load_splits(cfg: Config) -> Splits:
    """The splits of `source.actions_file` per ticker (none when it is not set). Read once
    per version of the file: every read of a ticker's bars asks for them."""
    if cfg.source.actions_file is None:
        return {}
    path = cfg.resolve(cfg.source.actions_file)
    try:
        seen = path.stat()
    except OSError:
        return read_actions(path)  # its own error, naming the file
    return _read_once(str(path), seen.st_mtime_ns, seen.st_size)


@functools.lru_cache(maxsize=4)
def _read_once(path: str, mtime_ns: int, size: int) -> Splits:
    del mtime_ns, size  # the cache key: a changed file is read again
    return read_actions(Path(path))
