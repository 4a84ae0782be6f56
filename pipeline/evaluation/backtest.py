"""Walk-forward backtest: the model and every baseline, refitted on one schedule.

Rolling origin, as forecasting libraries do it (Darts' historical forecasts,
neuralforecast's cross-validation): at each refit point the LSTM is trained on the
bars up to that day only, with the tuned parameters (the production version's, or
tuned once at the first refit point when there are none, or at every refit point with
`tune=True`), then forecasts every session until the next refit point. Naive, EWMA, HAR
and GJR-GARCH-t are refitted at the same points on the same data. What comes out is one
row per (ticker, session) with every forecaster's intervals and losses
(`backtest_scores.py` scores them).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.data.features import FEATURES, TARGET, base_scale
from pipeline.evaluation.backtest_series import Series
from pipeline.forecasting import conformal, intervals
from pipeline.forecasting.intervals import LEVELS, Forecast

if TYPE_CHECKING:
    from pipeline.forecasting.model import LSTMParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    tickers: list[str]
    start: dt.date = dt.date(2008, 8, 1)
    end: dt.date | None = None  # default: the newest bar
    refit_every: int = 63  # sessions between refits (a quarter)
    tune: bool = False  # tune at every refit point (else reuse tuned parameters)
    scope: str = "ticker"  # ticker: a network per ticker; universe: one for all of them
    holdout: tuple[str, ...] = ()  # universe: tickers forecast but never trained on
    # parameters and epochs to use instead of tuning at the first refit, per model key (a
    # ticker, or `universe`): the production version's with --production-params, tuned on
    # data after most refit points (hyperparameter look-ahead), so opt-in
    known_params: Mapping[str, tuple[LSTMParams, int]] = field(default_factory=dict)
    min_train_rows: int = 250  # a series forecasts only once it has this much history
    report_from: dt.date | None = None  # the final figure's first day (earlier: tuning)


def refit_points(series: Series, plan: Plan) -> list[tuple[int, int]]:
    """[start, stop) feature-row blocks: each forecast from one refit at its first row."""
    dates = series.feats["Date"]
    live = series.feats[TARGET].notna() & (dates >= pd.Timestamp(plan.start))
    live &= np.arange(len(dates)) >= plan.min_train_rows  # a young ticker joins later
    if plan.end is not None:
        live &= dates <= pd.Timestamp(plan.end)
    rows = np.flatnonzero(live.to_numpy())
    if len(rows) == 0:
        return []
    starts = rows[:: plan.refit_every]
    stops = [*starts[1:], rows[-1] + 1]
    return list(zip(starts.tolist(), stops, strict=True))


def block_days(series: Series, a: int, b: int) -> pd.DataFrame:
    """The sessions forecast from the refit at row a: made at each close, for the next."""
    f = series.feats.iloc[a:b]
    return pd.DataFrame(
        {
            "ticker": series.ticker,
            "refit": f["Date"].iloc[0],
            "as_of": f["Date"].to_numpy(),
            # the row after each: a forecast row always has its next (its target is known)
            "for_date": series.feats["Date"].iloc[a + 1 : b + 1].to_numpy(),
            "last_close": f["Close"].to_numpy(),
            "actual": (f["Close"] * np.exp(f[TARGET])).to_numpy(),
        }
    )


def refit_splits(feats: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
    """Rows before a train (their next-day targets are known at the close of row a), rows
    a..b-1 are forecast, later rows are not seen: they are labelled live and never used."""
    split = np.full(len(feats), "live", dtype=object)
    split[:a], split[a:b] = "train", "test"
    # a row before missing sessions has no one-session target: never trained on (a test
    # row of that kind is forecast, then dropped with its unknown outcome: `known`)
    split[:a][feats[TARGET].iloc[:a].isna().to_numpy()] = "live"
    return feats.assign(split=split)


def known(days: pd.DataFrame) -> pd.DataFrame:
    """The sessions whose outcome is a one-session move (not one over missing sessions)."""
    return days[days["actual"].notna()].reset_index(drop=True)


def model_forecast(
    series: Series,
    a: int,
    b: int,
    params: Any,
    epochs: int,
    seed: int,
    base: str = "trailing",
    windows_per_epoch: int | None = None,
    combine: bool = False,
) -> Forecast:
    """Train on the rows before a (scalers fitted on them only), forecast rows a..b-1."""
    blocks = [(series, a, b)]
    return pooled_forecasts(
        blocks, params, epochs, seed, base, windows_per_epoch=windows_per_epoch, combine=combine
    )[series.ticker]


Block = tuple[Series, int, int]  # a series and the rows [a, b) it forecasts from one refit


def pooled_forecasts(
    blocks: list[Block],
    params: Any,
    epochs: int,
    seed: int,
    base: str = "trailing",
    forecast_only: frozenset[str] = frozenset(),
    windows_per_epoch: int | None = None,
    combine: bool = False,
) -> dict[str, Forecast]:
    """One network trained on every series' rows before its block (scalers and base fitted
    on those rows, pooled; windows within each series; `windows_per_epoch` sampled windows
    an epoch, as in the pipeline), forecasting each block. Series in `forecast_only` are
    forecast but never trained on (a cold start)."""
    from pipeline.forecasting.train import fit_final, har_fit

    frames = []
    for s, a, b in blocks:
        if a < params.window:
            raise ValueError(f"{s.ticker}: {a} rows before the first refit; window {params.window}")
        split = refit_splits(s.feats, a, b).iloc[:b]
        if s.ticker in forecast_only:
            split = split.assign(split=np.where(split["split"] == "test", "test", "live"))
        frames.append(split.assign(ticker=s.ticker))
    feats = pd.concat(frames, ignore_index=True)
    net, prep = fit_final(params, feats, epochs, seed, base, windows_per_epoch)
    har = har_fit(feats) if combine else None  # as the served version carries it
    test, _ = prep.windows("test")
    raw = np.asarray(net.predict(test, batch_size=1024, verbose=0), dtype="float64")
    out, at = {}, 0
    for s, a, b in blocks:  # test windows come out series by series, in block order
        rows = raw[at : at + b - a]
        at += b - a
        matrix = s.feats[FEATURES].to_numpy(dtype="float64")[a:b]
        loc, scale = intervals.distribution(rows, base_scale(matrix, prep.base))
        loc = prep.y_scaler.inverse(loc.reshape(-1, 1))[:, 0]
        if har is not None:
            drift = float(prep.y_scaler.mean[0])
            loc, scale = intervals.combine_with_har(loc, scale, base_scale(matrix, har), drift)
        last = s.feats["Close"].to_numpy()[a:b]
        out[s.ticker] = Forecast(last, loc, scale, intervals.STUDENT_T_DF)
    return out


def baseline_forecasts(series: Series, a: int, b: int) -> dict[str, Forecast]:
    """Naive, EWMA, HAR and GJR-GARCH-t fitted on what is known at the close of row a."""
    from pipeline.evaluation.baselines import garch_forecast, har_forecast

    bars, pos = series.bars, series.bar_of[a:b]
    returns = np.diff(np.log(bars["Close"].to_numpy(dtype="float64")))
    at = pos - 1  # the return ending at each forecast's close
    last = bars["Close"].to_numpy(dtype="float64")[pos]
    drift = float(series.feats[TARGET].iloc[:a].mean())
    loc = np.full(b - a, drift)
    fit_rows = series.bar_of[:a]  # bars whose next return is known by the close of row a
    return {
        "naive": Forecast(last, loc, intervals.trailing_std(returns)[at]),
        "ewma": Forecast(last, loc, intervals.ewma_std(returns)[at]),
        "har": har_forecast(bars, fit_rows[fit_rows + 1 <= pos[0]], pos, last, loc),
        "garch": garch_forecast(returns, int(pos[0]), at, last),
    }


def losses(days: pd.DataFrame, name: str, f: Forecast) -> dict[str, np.ndarray]:
    """Per day: the forecaster's intervals, CRPS and QLIKE (what the scores are made of)."""
    from pipeline.evaluation.statistics import qlike

    actual = days["actual"].to_numpy()
    r = np.log(actual / f.last_close)
    out: dict[str, np.ndarray] = {}
    for level in LEVELS:
        pct = round(level * 100)
        out[f"{name}_lower_{pct}"], out[f"{name}_upper_{pct}"] = f.interval(level)
    out[f"{name}_crps"] = intervals.crps(r, f)
    out[f"{name}_qlike"] = qlike(r - f.loc, f.variance())
    out[f"{name}_forecast_close"] = f.last_close * np.exp(f.loc)
    return out


def block_sessions(series: Series, a: int, b: int, model: Forecast) -> pd.DataFrame:
    """One block's sessions with the model's and every refitted baseline's losses."""
    days = block_days(series, a, b)
    cols: dict[str, np.ndarray] = {}
    for name, forecast in {"model": model, **baseline_forecasts(series, a, b)}.items():
        cols.update(losses(days, name, forecast))
    return days.assign(**cols)


def run_ticker(
    cfg: Config,
    series: Series,
    plan: Plan,
    params_for: Callable[[Series, int], tuple[Any, int]],
    step: Callable[[], None],
) -> pd.DataFrame:
    """Every block of one ticker: refit model and baselines, forecast, keep the losses."""
    frames = []
    for a, b in refit_points(series, plan):
        params, epochs = params_for(series, a)
        model = model_forecast(
            series,
            a,
            b,
            params,
            epochs,
            cfg.tune.seed,
            cfg.model.base,
            cfg.tune.windows_per_epoch,
            cfg.model.combine_har,
        )
        frames.append(block_sessions(series, a, b, model))
        step()
    if not frames:
        return pd.DataFrame()
    return adaptive(known(pd.concat(frames, ignore_index=True)), *calibration(cfg))


def calibration(cfg: Config) -> tuple[float, int]:
    return cfg.model.conformal_step, cfg.model.conformal_lookback


def adaptive(days: pd.DataFrame, step: float, lookback: int) -> pd.DataFrame:
    """The adaptive conformal widths over each ticker's out-of-sample sessions, in order
    across refits (each session's factor from the misses of the `lookback` forecasts before
    it, made by the models live then: as a deployed model's recent forecasts are): the
    model's intervals become `model` (as trained: `model_raw`), HAR's `har_aci`."""
    days = days.sort_values(["ticker", "as_of"], kind="stable").reset_index(drop=True)
    out = {}
    for raw, name in (("model", "model_raw"), ("har", "har_aci")):
        for kind in ("crps", "qlike", "forecast_close"):
            out[f"{name}_{kind}"] = days[f"{raw}_{kind}"].to_numpy()
    for level in LEVELS:
        pct = round(level * 100)
        for raw, into in (("model", "model"), ("har", "har_aci")):
            lower, upper = days[f"{raw}_lower_{pct}"], days[f"{raw}_upper_{pct}"]
            if raw == "model":  # as trained, kept beside the adaptive ones
                out[f"model_raw_lower_{pct}"], out[f"model_raw_upper_{pct}"] = lower, upper
            widened = [
                conformal.widen(g, level, step, lookback)
                for _, g in days.assign(lower=lower, upper=upper).groupby("ticker", sort=False)
            ]
            out[f"{into}_lower_{pct}"] = np.concatenate([w[0] for w in widened])
            out[f"{into}_upper_{pct}"] = np.concatenate([w[1] for w in widened])
    return days.assign(**out)
