"""Evaluate: new model vs naive persistence vs the production model, on the same held-out days.

MASE here is MAE divided by the naive forecast's MAE on those same days, so
naive scores exactly 1 and "beats naive" means MASE < 1. Directional accuracy
counts a "no change" forecast as half right (naive therefore scores 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation import baselines as classical
from pipeline.evaluation.statistics import diebold_mariano, diebold_mariano_losses, scores
from pipeline.forecasting import conformal, intervals
from pipeline.forecasting.intervals import Forecast


@dataclass(frozen=True)
class Scores:
    mae: float
    rmse: float
    mape: float
    mase: float
    directional_accuracy: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in self.__dict__.items()}


def score(actual: np.ndarray, forecast: np.ndarray, last: np.ndarray) -> Scores:
    err = forecast - actual
    naive_mae = float(np.mean(np.abs(last - actual)))
    moved, called = np.sign(actual - last), np.sign(forecast - last)
    hits = np.where(called == 0, 0.5, (called == moved).astype(float))
    mae = float(np.mean(np.abs(err)))
    return Scores(
        mae=mae,
        rmse=float(np.sqrt(np.mean(err**2))),
        mape=float(np.mean(np.abs(err / actual)) * 100),
        mase=mae / naive_mae if naive_mae > 0 else math.inf,
        directional_accuracy=float(np.mean(hits)),
    )


def test_days(feats: pd.DataFrame) -> pd.DataFrame:
    """Per test row: the close it is made at, the day it forecasts, and that day's close."""
    is_test = feats["split"] == "test"
    test = feats[is_test]
    return pd.DataFrame(
        {
            "as_of": test["Date"].to_numpy(),
            "for_date": feats["Date"].shift(-1)[is_test].to_numpy(),
            "last_close": test["Close"].to_numpy(),
            "actual": (test["Close"] * np.exp(test["target"])).to_numpy(),
        }
    )


def align(days: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """A model's forecasts on exactly `days` (forecast_close, and loc/scale when it has a
    distribution); refuses to compare on different days."""
    wanted = ("forecast_close", "loc", "scale", "df", "conformal_step", "conformal_lookback")
    cols = [c for c in wanted if c in forecasts]
    got = days[["as_of"]].merge(forecasts[["as_of", *cols]], on="as_of", how="left")
    if got["forecast_close"].isna().any():
        raise ValueError(
            f"model has no forecast for {got['forecast_close'].isna().sum()} test day(s)"
        )
    return got


def has_distribution(aligned: pd.DataFrame | None) -> bool:
    return aligned is not None and "scale" in aligned and bool(aligned["scale"].notna().all())


BASELINES = ("naive_", "ewma_", "har_", "garch_")  # prefixes, weakest first


def baselines(days: pd.DataFrame, bars: pd.DataFrame, feats: pd.DataFrame) -> dict[str, Forecast]:
    """Every baseline's forecast for the test days, each from what is known at the close it
    is made at: the naive interval (drift = training-mean return, trailing 20-session std),
    EWMA (RiskMetrics 0.94), HAR on range-based variance and GJR-GARCH-t, the last two
    fitted once, on the days before the test period (what the model's final fit sees),
    and run forward over the test days with those parameters (no refit per day)."""
    closes = bars["Close"].to_numpy(dtype="float64")
    returns = np.diff(np.log(closes))  # returns[j]: from bar j to bar j + 1
    bar_of = pd.Index(bars["Date"]).get_indexer(pd.DatetimeIndex(days["as_of"]))
    if (bar_of < 1).any():
        raise ValueError("a test day is missing from the bars the baselines are built from")
    at = bar_of - 1  # the return ending at the close each forecast is made at
    drift = float(feats.loc[feats["split"] == "train", "target"].mean())
    last, loc = days["last_close"].to_numpy(), np.full(len(days), drift)
    fitted = pd.Index(bars["Date"]).get_indexer(
        pd.DatetimeIndex(feats.loc[feats["split"].isin(["train", "val"]), "Date"])
    )
    har = classical.har_forecast(bars, fitted[fitted >= 0], bar_of, last, loc)
    return {
        "naive_": Forecast(last, loc, intervals.trailing_std(returns)[at]),
        "ewma_": Forecast(last, loc, intervals.ewma_std(returns)[at]),
        "har_": har,
        "garch_": classical.garch_forecast(returns, int(at[0]) + 1, at, last),
    }


def compare_intervals(
    days: pd.DataFrame,
    model: pd.DataFrame,
    production: pd.DataFrame | None,
    base: dict[str, Forecast],
) -> dict[str, Any]:
    """Coverage (and its tests), interval scores, CRPS, QLIKE and NLL of the model, every
    baseline (and production when it has intervals) on the same days; Diebold-Mariano of
    the model's 80 % interval score against each baseline's; the best baseline by it."""
    actual = days["actual"].to_numpy()
    of = {"model_": calibrated(days, model), **base}
    if production is not None and has_distribution(production):
        of["production_"] = calibrated(days, production)
    out: dict[str, Any] = {}
    for prefix, forecast in of.items():
        out.update(scores(actual, forecast, prefix))
    per_day = {p: intervals.interval_score(actual, *f.interval(0.8), 0.8) for p, f in of.items()}
    for prefix in base:
        name = "" if prefix == "naive_" else prefix  # interval_dm_* is vs naive: a contract
        stat, pvalue = diebold_mariano_losses(per_day["model_"], per_day[prefix])
        out[f"interval_dm_{name}stat"], out[f"interval_dm_{name}pvalue"] = stat, pvalue
    best = min(base, key=lambda p: out[f"{p}interval_score_80"])
    out["best_baseline"] = best.rstrip("_")
    return out


def calibrated(days: pd.DataFrame, aligned: pd.DataFrame) -> Forecast:
    """A model's forecasts on `days`, with the adaptive conformal widths its version carries
    run over these days only: from the first test day on, as the version serves after its
    training, on sessions it never trained on (none for versions logged before them)."""
    last = days["last_close"].to_numpy()
    df = float(aligned["df"].iloc[0]) if "df" in aligned else None
    f = Forecast(last, aligned["loc"].to_numpy(), aligned["scale"].to_numpy(), df)
    if "conformal_step" not in aligned:
        return f
    step, lookback = (
        float(aligned["conformal_step"].iloc[0]),
        int(aligned["conformal_lookback"].iloc[0]),
    )
    return conformal.calibrate(f, np.log(days["actual"].to_numpy() / last), step, lookback)


def compare(days: pd.DataFrame, model: np.ndarray, production: np.ndarray | None) -> dict[str, Any]:
    actual, last = days["actual"].to_numpy(), days["last_close"].to_numpy()
    out: dict[str, Any] = {
        "test_days": len(days),
        "first_test_date": f"{pd.Timestamp(days['for_date'].iloc[0]):%Y-%m-%d}",
        "last_test_date": f"{pd.Timestamp(days['for_date'].iloc[-1]):%Y-%m-%d}",
        **score(actual, model, last).as_dict("model_"),
        **score(actual, last, last).as_dict("naive_"),
    }
    out["dm_stat"], out["dm_pvalue"] = diebold_mariano(model - actual, last - actual)
    if production is not None:
        out.update(score(actual, production, last).as_dict("production_"))
    return out


def forecasts_of(model_uri: str, bars: pd.DataFrame) -> pd.DataFrame:
    """Every forecast a logged model makes over `bars`, through its own preprocessing."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().forecast_all(bars)


def evaluate_models(
    bars: pd.DataFrame, feats: pd.DataFrame, model_uri: str, production_uri: str | None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Scores of model, naive and production on the test days of `feats`, plus the daily table."""
    days = test_days(feats)
    model = align(days, forecasts_of(model_uri, bars))
    production = align(days, forecasts_of(production_uri, bars)) if production_uri else None
    prod_close = production["forecast_close"].to_numpy() if production is not None else None
    result = compare(days, model["forecast_close"].to_numpy(), prod_close)
    table = days.assign(model=model["forecast_close"].to_numpy(), naive=days["last_close"])
    if prod_close is not None:
        table = table.assign(production=prod_close)
    if has_distribution(model):
        base = baselines(days, bars, feats)
        result.update(compare_intervals(days, model, production, base))
        fc = calibrated(days, model)
        for level in intervals.LEVELS:
            lower, upper = fc.interval(level)
            pct = round(level * 100)
            table = table.assign(**{f"lower_{pct}": lower, f"upper_{pct}": upper})
        actual_r = np.log(days["actual"].to_numpy() / days["last_close"].to_numpy())
        table = table.assign(
            loc=fc.loc,
            scale=fc.scale,
            pit=intervals.pit(actual_r, fc.loc, fc.scale, fc.df),
            **{f"{p}lower_80": base[p].interval(0.8)[0] for p in BASELINES},
            **{f"{p}upper_80": base[p].interval(0.8)[1] for p in BASELINES},
        )
    return result, table
