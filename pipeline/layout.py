"""Where everything lives: the one place that builds state paths and model URIs.

In the spirit of Kedro's catalog: steps ask `cfg.layout` for a path instead of
joining strings, so moving a folder is a one-line change here, and every path
built from a ticker or a run day is checked to stay under the state root.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

MODELS_SCHEME = "models:/"
# A ticker symbol as exchanges and data vendors write them: GOOG, BRK-B, BRK.B, ^GSPC,
# EURUSD=X, GC=F. Letters, digits and . - ^ = only, at most 20, not starting with . - or =:
# it becomes a file name and part of a model name, so nothing that can leave a folder.
TICKER_RULE = "1-20 of A-Z a-z 0-9 . - ^ =, starting with a letter, digit or ^"
TICKER_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.^=-]{0,19}$"  # also the DAG param's JSON schema
_TICKER = re.compile(TICKER_PATTERN)


class BadTicker(ValueError):
    """A ticker that is not a plain symbol; the message shows it and the rule."""


def check_ticker(ticker: str) -> str:
    """`ticker` itself if it is a plain symbol (TICKER_RULE), else BadTicker."""
    if not isinstance(ticker, str) or not _TICKER.fullmatch(ticker):
        shown = repr(ticker) if len(repr(ticker)) <= 40 else repr(ticker)[:37] + "..."
        raise BadTicker(f"ticker {shown} is not a plain symbol ({TICKER_RULE})")
    return ticker


def version_uri(name: str, version: str | int) -> str:
    """A registered model version: models:/<name>/<version>."""
    return f"{MODELS_SCHEME}{name}/{version}"


def alias_uri(name: str, alias: str) -> str:
    """Whatever version an alias points at: models:/<name>@<alias>."""
    return f"{MODELS_SCHEME}{name}@{alias}"


def parse_alias_uri(uri: str) -> tuple[str, str]:
    """models:/<name>@<alias> -> (name, alias)."""
    body = uri.removeprefix(MODELS_SCHEME)
    if body == uri or "@" not in body:
        raise ValueError(f"expected {alias_uri('<name>', '<alias>')}, got {uri!r}")
    name, alias = body.split("@", 1)
    return name, alias


def ensure_sqlite_dir(url: str) -> str:
    """SQLite creates its file but not its folder: make the folder of a sqlite:/// URL."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


@dataclass(frozen=True)
class Layout:
    """Paths under one state root (`cfg.state`)."""

    root: Path

    def _ticker_path(self, folder: str, ticker: str, *rest: str) -> Path:
        return self._under(folder, check_ticker(ticker), *rest)

    def _under(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"{'/'.join(parts)!r} would leave the state directory {self.root}")
        return path

    def raw_path(self, ticker: str, day: dt.date) -> Path:
        """Each day's pull, kept as it arrived."""
        return self._ticker_path("raw", ticker, f"{day.isoformat()}.csv")

    def raw_dirs(self) -> list[Path]:
        """Every ticker's folder of daily pulls (what compaction walks)."""
        return sorted(p for p in (self.root / "raw").glob("*") if p.is_dir())

    def curated_path(self, ticker: str) -> Path:
        return self._under("curated", f"{check_ticker(ticker)}.parquet")

    def revisions_path(self, ticker: str) -> Path:
        """Changed cells of already-stored bars, appended per run."""
        return self._under("curated", f"{check_ticker(ticker)}.revisions.csv")

    def curated_tables(self) -> list[Path]:
        return sorted((self.root / "curated").glob("*.parquet"))

    def quarantine_dir(self, ticker: str, day: dt.date) -> Path:
        return self._ticker_path("quarantine", ticker, day.isoformat())

    def quarantined_rows(self, ticker: str) -> Path:
        """Older rows of a ticker that failed a per-row rule: rule, values, run day."""
        return self._ticker_path("quarantine", ticker, "rows.csv")

    def features_dir(self, ticker: str, day: dt.date) -> Path:
        return self._ticker_path("features", ticker, day.isoformat())

    def features_path(self, ticker: str, day: dt.date) -> Path:
        return self.features_dir(ticker, day) / "features.parquet"

    def features_dirs(self) -> list[Path]:
        """Every ticker's (or model's) folder of per-run features (what compaction walks)."""
        return sorted(p for p in (self.root / "features").glob("*") if p.is_dir())

    def latest_features(self, ticker: str) -> Path | None:
        """The features of the latest run day for `ticker`, if any run built them."""
        found = sorted(self._ticker_path("features", ticker).glob("*/features.parquet"))
        return found[-1] if found else None

    def adhoc_dir(self) -> Path:
        """`python -m pipeline run --csv` work directories, one per run."""
        return self.root / "adhoc"

    def forecasts_db(self) -> Path:
        return self.root / "forecasts.sqlite"

    def data_docs(self) -> Path:
        """The GX Data Docs site (its index.html is the page to open)."""
        return self.root / "reports" / "data_docs"

    def logs_dir(self) -> Path:
        return self.root / "logs"

    def run_log(self, dag_id: str, day: dt.date) -> Path:
        """A new log for one DAG run of `day`; the last one is kept as .previous.log."""
        path = self.logs_dir() / f"{dag_id}-{day.isoformat()}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.replace(path.with_suffix(".previous.log"))
        return path

    def airflow_home(self) -> Path:
        return self.root / "airflow"
