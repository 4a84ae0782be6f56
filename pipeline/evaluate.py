"""Evaluate: new model vs naive persistence vs the production model, on the same held-out days.

MASE here is MAE divided by the naive forecast's MAE on those same days, so
naive scores exactly 1 and "beats naive" means MASE < 1. Directional accuracy
counts a "no change" forecast as half right (naive therefore scores 0.5).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.layout import version_uri


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


def diebold_mariano(
    e_model: np.ndarray, e_base: np.ndarray, horizon: int = 1
) -> tuple[float, float]:
    """DM test on squared errors with the Harvey-Leybourne-Newbold correction.

    Negative statistic: the model's errors are smaller. Two-sided p-value from t(n-1).
    """
    from scipy import stats

    d = e_model**2 - e_base**2
    n = len(d)
    mean = d.mean()
    gamma = [np.mean((d[k:] - mean) * (d[: n - k] - mean)) for k in range(horizon)]
    var = (gamma[0] + 2 * sum(gamma[1:])) / n
    if n < 3 or var <= 0:
        return 0.0, 1.0
    hln = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = hln * mean / math.sqrt(var)
    return float(stat), float(2 * stats.t.sf(abs(stat), df=n - 1))


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


def align(days: pd.DataFrame, forecasts: pd.DataFrame) -> np.ndarray:
    """A model's forecasts on exactly `days`; refuses to compare on different days."""
    got = days[["as_of"]].merge(forecasts[["as_of", "forecast_close"]], on="as_of", how="left")
    if got["forecast_close"].isna().any():
        raise ValueError(
            f"model has no forecast for {got['forecast_close'].isna().sum()} test day(s)"
        )
    return got["forecast_close"].to_numpy()


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
    table = days.assign(model=model, naive=days["last_close"])
    if production is not None:
        table = table.assign(production=production)
    return compare(days, model, production), table


def plot_forecasts(table: pd.DataFrame) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(table["for_date"], table["actual"], label="actual close", color="black", lw=1)
    top.plot(table["for_date"], table["model"], label="model forecast", lw=1)
    if "production" in table:
        top.plot(table["for_date"], table["production"], label="production forecast", lw=1)
    top.set_title("Next-day close on held-out test days")
    top.legend()
    bottom.plot(table["for_date"], table["model"] - table["actual"], label="model", lw=0.8)
    bottom.plot(
        table["for_date"], table["naive"] - table["actual"], label="naive", lw=0.8, alpha=0.6
    )
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_title("Residuals (forecast - actual), USD")
    bottom.legend()
    fig.tight_layout()
    return fig


def run(
    cfg: Config, ticker: str, day: dt.date, features_path: str, model_uri: str, parent_run_id: str
) -> dict[str, Any]:
    from pipeline import registry, store, tracking

    feats = pd.read_parquet(features_path)
    bars = store.read_curated(cfg, ticker, until=day)
    production = registry.production_version(cfg, ticker)
    prod_uri = version_uri(production.name, production.version) if production else None
    result, table = evaluate_models(bars, feats, model_uri, prod_uri)
    result["production_version"] = str(production.version) if production else None
    mc = tracking.client(cfg)
    mc.log_batch(
        parent_run_id,
        metrics=[
            _metric(f"test_{k}", v)
            for k, v in result.items()
            if isinstance(v, float) and math.isfinite(v)
        ],
    )
    fig = plot_forecasts(table)
    mc.log_figure(parent_run_id, fig, "plots/test_forecasts.png")
    import matplotlib.pyplot as plt

    plt.close(fig)  # pyplot keeps every figure until closed
    mc.log_table(
        parent_run_id,
        table.assign(as_of=table["as_of"].astype(str), for_date=table["for_date"].astype(str)),
        "evaluation/test_days.json",
    )
    return result


def _metric(key: str, value: float) -> Any:
    import time

    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)
