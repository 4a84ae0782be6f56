"""Features: scale-free inputs from bars, a chronological split, train-only scaling, windows.

Every feature at row t uses bars up to t only; the target at row t is the log
return from t to t+1, so a row is assigned to a split by the day it predicts.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.carry import Featured
from pipeline.config import Config
from pipeline.data import gaps, store
from pipeline.data.bars import NUMBER_COLUMNS
from pipeline.data.rules import TOO_SHORT, Skipped

# The day's range says more about risk than the close-to-close path: rv_d, rv_w, rv_m are
# the logs of the 1-, 5- and 22-session mean of the range-based variance (squared overnight
# gap + Garman-Klass), HAR's own regressors, so the net sees what HAR sees.
FEATURES = ["log_ret", "range", "body", "gap", "volatility", "volume_z", "dow_sin", "dow_cos",
            "rv_d", "rv_w", "rv_m"]  # fmt: skip
RANGE_FEATURES = ("rv_d", "rv_w", "rv_m")
HAR_WINDOWS = (1, 5, 22)
TARGET = "target"
RV_NEXT = "rv_next"  # the next session's rv_d: what the HAR base is fitted to
BASE_SCALE = "volatility"  # trailing std of log returns: the "trailing" base scale
SPLITS = ("train", "val", "test")
VARIANCE_FLOOR = 1e-12


COLUMN = {name: i for i, name in enumerate(FEATURES)}


@functools.lru_cache(maxsize=8)
def _window_rows(n: int, window: int) -> np.ndarray:
    """Row numbers of every full trailing window over n rows, one window per row."""
    return np.arange(n - window + 1)[:, None] + np.arange(window)


def rolling_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and sample std (ddof=1) over `window` rows; NaN until the window is full.

    Plain numpy, not pandas .rolling(): the serving path runs this per request, and in a
    server every NumPy call costs about 10 us, so it makes few: the windows by one take,
    then np.mean's and np.std's own arithmetic spelled out (the same numbers).
    """
    mean, std = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if len(x) >= window:
        windows = x[_window_rows(len(x), window)]
        mean[window - 1 :] = windows.sum(axis=1) / window
        deviations = windows - mean[window - 1 :, None]
        std[window - 1 :] = np.sqrt((deviations * deviations).sum(axis=1) / (window - 1))
    return mean, std


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """rolling_mean_std's mean alone (the same numbers), for features that need no std."""
    mean = np.full(len(x), np.nan)
    if len(x) >= window:
        mean[window - 1 :] = x[_window_rows(len(x), window)].sum(axis=1) / window
    return mean


def feature_matrix(
    days: np.ndarray,
    ohlcv: np.ndarray,
    vol_window: int,
    volume_window: int,
    breaks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The features (columns in FEATURES order) and the log returns of bars given as
    datetime64 days and an (n, 5) Open/High/Low/Close/Volume array: the one implementation
    training (make_features) and serving (the pyfunc, on its last rows only) share.
    Rows still warming up hold NaN. Written into one array, with as few NumPy calls as
    the features allow (see rolling_mean_std). Rows marked in `breaks` (the bar before
    them is not the previous session: pipeline/data/gaps.py) get no return and no gap, so
    no move over missing sessions is taken for one session's, and the windows warm up
    again after them."""
    o, h, lo, c, v = ohlcv.T
    log_o, log_c, log_vol = np.log(o), np.log(c), np.log1p(v)
    out = np.full((len(ohlcv), len(FEATURES)), np.nan)
    log_ret = out[:, COLUMN["log_ret"]]
    np.subtract(log_c[1:], log_c[:-1], out=log_ret[1:])
    np.log(h / lo, out=out[:, COLUMN["range"]])  # inf if the ratio overflows: refused later
    np.log(c / o, out=out[:, COLUMN["body"]])
    np.subtract(log_o[1:], log_c[:-1], out=out[1:, COLUMN["gap"]])
    if breaks is not None and breaks.any():
        log_ret[breaks] = np.nan
        out[breaks, COLUMN["gap"]] = np.nan
    out[:, COLUMN["volatility"]] = rolling_mean_std(log_ret, vol_window)[1]
    # range-based variance; the first row has no previous close, so none (not GK alone:
    # a request's first row would then differ from the same day in training)
    gk = 0.5 * out[:, COLUMN["range"]] ** 2 - (2 * np.log(2) - 1) * out[:, COLUMN["body"]] ** 2
    v = np.maximum(out[:, COLUMN["gap"]] ** 2 + gk, VARIANCE_FLOOR)  # NaN on row 0
    np.log(v, out=out[:, COLUMN["rv_d"]])
    for name, span in (("rv_w", HAR_WINDOWS[1]), ("rv_m", HAR_WINDOWS[2])):
        np.log(rolling_mean(v, span), out=out[:, COLUMN[name]])
    vol_mean, vol_std = rolling_mean_std(log_vol, volume_window)
    with np.errstate(invalid="ignore", divide="ignore"):
        volume_z = (log_vol - vol_mean) / vol_std  # NaN while warming up
    volume_z[vol_std == 0] = 0.0  # constant volume: z-score 0
    out[:, COLUMN["volume_z"]] = volume_z
    # 1970-01-01 was a Thursday: +3 makes Monday 0, as pandas' dayofweek
    weekday = (np.asarray(days, dtype="datetime64[D]").view("int64") + 3) % 7
    dow = weekday * (2 * np.pi / 5)
    np.sin(dow, out=out[:, COLUMN["dow_sin"]])
    np.cos(dow, out=out[:, COLUMN["dow_cos"]])
    return out, log_ret.copy()


def warm_up(vol_window: int, volume_window: int) -> int:
    """Rows before the first with every feature: the log return's one, then its window
    (the range variance's too: it needs a previous close, then HAR's 22 sessions)."""
    return max(vol_window, volume_window - 1, HAR_WINDOWS[-1])


def make_features(
    bars: pd.DataFrame, vol_window: int, volume_window: int, calendar: str | None = None
) -> pd.DataFrame:
    """Scale-free features; the last row has no target (it is the input for tomorrow).
    With `calendar`, a move over missing sessions is neither an input nor a target."""
    days = bars["Date"].to_numpy(dtype="datetime64[ns]")
    ohlcv = bars[NUMBER_COLUMNS].to_numpy(dtype="float64")
    cut = gaps.breaks(days, calendar) if calendar else None
    matrix, log_ret = feature_matrix(days, ohlcv, vol_window, volume_window, cut)
    out = pd.DataFrame(matrix, columns=FEATURES)
    out.insert(0, "Close", ohlcv[:, 3])
    out.insert(0, "Date", days)
    out[TARGET] = np.concatenate([log_ret[1:], [np.nan]])
    out[RV_NEXT] = np.concatenate([matrix[1:, COLUMN["rv_d"]], [np.nan]])
    warm = ~np.isnan(matrix).any(axis=1)
    return out[warm].reset_index(drop=True)


def fit_har_base(feats: pd.DataFrame, rows: np.ndarray) -> dict[str, Any]:
    """HAR on the range features (pipeline.evaluation.baselines' model, fitted here on
    `rows`): OLS of the next session's log range variance on [1, rv_d, rv_w, rv_m], and
    Duan's smearing factor, so sqrt(exp(fit) * smearing) estimates the next return's std."""
    x = har_design(feats[list(RANGE_FEATURES)].to_numpy(dtype="float64"))
    y = feats[RV_NEXT].to_numpy(dtype="float64")
    use = np.asarray(rows, dtype=bool) & np.isfinite(y) & np.isfinite(x).all(axis=1)
    if use.sum() <= x.shape[1]:
        raise ValueError(f"the HAR base needs more than {x.shape[1]} training rows")
    coef = np.linalg.lstsq(x[use], y[use], rcond=None)[0]
    smearing = float(np.mean(np.exp(y[use] - x[use] @ coef)))
    return {"kind": "har", "coef": coef.tolist(), "smearing": smearing}


def har_design(rv: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(rv)), rv])


def base_scale(matrix: np.ndarray, base: dict[str, Any]) -> np.ndarray:
    """The scale an untrained net forecasts, per row of a FEATURES matrix: the HAR forecast
    of the next return's std (`base` from fit_har_base), or the trailing std."""
    if base.get("kind") != "har":
        return np.asarray(matrix[:, COLUMN[BASE_SCALE]])
    rv = matrix[:, [COLUMN[f] for f in RANGE_FEATURES]]
    fit = har_design(rv) @ np.asarray(base["coef"])
    return np.asarray(np.sqrt(np.exp(fit) * float(base["smearing"])))


def assign_splits(feats: pd.DataFrame, val_fraction: float, test_fraction: float) -> pd.Series:
    """train | val | test in time order over labelled rows; unlabelled rows (the last one,
    and one before a gap: its next move spans missing sessions) are 'live'."""
    labelled = feats[TARGET].notna().to_numpy()
    n = int(labelled.sum())
    n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} labelled rows are too few for the val/test fractions")
    labels = np.full(len(feats), "live", dtype=object)
    labels[labelled] = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    return pd.Series(labels, index=feats.index, name="split")


@dataclass(frozen=True)
class Scaler:
    """Standardisation fitted on training rows only; plain arrays so it pickles and prints."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        scale = x.std(axis=0)
        return cls(mean=x.mean(axis=0), scale=np.where(scale > 0, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale + self.mean


def make_windows(
    x: np.ndarray, y: np.ndarray, window: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each target row i (i >= window-1): inputs x[i-window+1..i], label y[i].

    A validation or test window may start in earlier rows: those inputs were known
    on day i, so this is not look-ahead; the label is never from another split.
    """
    rows = rows[rows >= window - 1]
    idx = rows[:, None] + np.arange(-window + 1, 1)[None, :]
    return x[idx].astype("float32"), y[rows].astype("float32")


@dataclass(frozen=True)
class Prepared:
    """Scaled inputs and labels, row by row, scalers (and the base) fitted on train rows,
    and per split the rows a window ends on (`rows`). Windows are gathered when asked for
    (`windows`), never all at once: 394 tickers' windows of 60 rows are 1.2 GB of float32
    (and as much again while built), their row numbers 4 MB; training samples windows
    batch by batch (pipeline/forecasting/sampling.py)."""

    inputs: np.ndarray  # (rows, features), float32, scaled
    labels: np.ndarray  # (rows, 2), float32: [scaled next return, base scale in its units]
    rows: dict[str, np.ndarray]  # per split: the rows with a full window within their series
    x_scaler: Scaler
    y_scaler: Scaler
    window: int
    base: dict[str, Any]

    def count(self, split: str) -> int:
        return len(self.rows[split])

    def windows(self, rows: str | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The windows (and labels) ending on `rows`: a split's name (all of them, in
        order) or some of its rows."""
        chosen = self.rows[rows] if isinstance(rows, str) else np.asarray(rows)
        return make_windows(self.inputs, self.labels, self.window, chosen)


def series_starts(feats: pd.DataFrame) -> list[int]:
    """Where each ticker's rows begin in a pooled frame (rows grouped by ticker, each in time
    order); one series: [0]. Windows never cross from one series into the next."""
    if "ticker" not in feats or feats.empty:
        return [0]
    tickers = feats["ticker"].to_numpy()
    return [0, *(np.flatnonzero(tickers[1:] != tickers[:-1]) + 1).tolist()]


def prepare(feats: pd.DataFrame, window: int, base: str = "trailing") -> Prepared:
    """Scaled inputs and labels; labels are [scaled next return, base scale]: the base
    scale (HAR's forecast fitted on the train rows, or the trailing std) in the label's
    units, which the network's scale multiplies (pipeline/forecasting/model.py). A pooled frame (a
    `ticker` column) gets one scaler and one base fit over every ticker's train rows, and
    windows within each ticker: a split's rows are those of its days whose window starts
    on the same ticker's rows."""
    split = feats["split"].to_numpy()
    train = split == "train"
    x_raw = feats[FEATURES].to_numpy(dtype="float64")
    y_raw = feats[[TARGET]].to_numpy(dtype="float64")
    x_scaler, y_scaler = Scaler.fit(x_raw[train]), Scaler.fit(y_raw[train])
    fitted = fit_har_base(feats, train) if base == "har" else {"kind": "trailing"}
    x = x_scaler.transform(x_raw).astype("float32")
    scale = base_scale(x_raw, fitted) / float(y_scaler.scale[0])
    y = np.column_stack([y_scaler.transform(np.nan_to_num(y_raw))[:, 0], scale])
    # the first row of each row's series: a window may not start before it
    starts = np.asarray(series_starts(feats))
    first = starts[np.searchsorted(starts, np.arange(len(feats)), side="right") - 1]
    full = np.arange(len(feats)) - first >= window - 1
    rows = {name: np.flatnonzero(full & (split == name)) for name in SPLITS}
    return Prepared(x, y.astype("float32"), rows, x_scaler, y_scaler, window, fitted)


def run(cfg: Config, ticker: str, day: dt.date) -> Featured:
    bars = store.read_adjusted(cfg, ticker, until=day)
    if len(bars) < cfg.validation.min_history_rows:  # e.g. its only pull was quarantined
        raise Skipped(
            TOO_SHORT,
            f"{len(bars)} valid stored sessions, {cfg.validation.min_history_rows} needed "
            "(validation.min_history_rows): left out of this retrain",
        )
    fc = cfg.features
    feats = make_features(bars, fc.volatility_window, fc.volume_window, cfg.validation.calendar)
    feats["split"] = assign_splits(feats, fc.val_fraction, fc.test_fraction)
    path = cfg.layout.features_path(ticker, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    feats.to_parquet(path, index=False)
    spans = {
        s: {
            "rows": int((feats.split == s).sum()),
            "first": f"{feats.Date[feats.split == s].min():%Y-%m-%d}",
            "last": f"{feats.Date[feats.split == s].max():%Y-%m-%d}",
        }
        for s in (*SPLITS, "live")
    }
    meta = {"ticker": ticker, "day": day.isoformat(), "features": FEATURES, "splits": spans}
    (path.parent / "meta.json").write_text(json.dumps(meta, indent=2))
    return {"features_path": str(path), "splits": spans}
