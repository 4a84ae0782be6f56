"""Evaluate the universe model: on every member's own test days, scored per ticker and pooled.

Per ticker, the same comparison as a per-ticker model gets (evaluate.py: naive, EWMA,
HAR, GJR-GARCH-t and production on the same days). Pooled over tickers, with the
walk-forward backtest's scoring (backtest_scores.py): interval scores and MAE in % of the
close, so that a $30 and an $800 stock weigh alike, and Diebold-Mariano tests on the
per-session mean difference over tickers. The pooled numbers carry the same keys as a
per-ticker evaluation (the gate reads them alike); `tickers` holds each member's own.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.data import universe
from pipeline.evaluation import backtest_scores, evaluate
from pipeline.evaluation.backtest import losses

PER_TICKER = (
    "model_interval_score_80",
    "naive_interval_score_80",
    "har_interval_score_80",
    "model_coverage_80",
    "model_mase",
    "test_days",
)


def member_sessions(
    ticker: str, bars: pd.DataFrame, feats: pd.DataFrame, model: Any, production: Any
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One member: its evaluation (as a per-ticker model's) and its per-day losses."""
    days = evaluate.test_days(feats)
    fc = evaluate.align(days, model.forecast_all(bars))
    prod = evaluate.align(days, production.forecast_all(bars)) if production else None
    result = evaluate.compare(
        days,
        fc["forecast_close"].to_numpy(),
        prod["forecast_close"].to_numpy() if prod is not None else None,
    )
    base = evaluate.baselines(days, bars, feats)
    result.update(evaluate.compare_intervals(days, fc, prod, base))
    every = {"model": evaluate._forecast(days, fc), **{k.rstrip("_"): f for k, f in base.items()}}
    cols: dict[str, np.ndarray] = {}
    for name, forecast in every.items():
        cols.update(losses(days, name, forecast))
    sessions = days.assign(ticker=ticker, **cols)
    if prod is not None:
        sessions["production_forecast_close"] = prod["forecast_close"].to_numpy()
    return result, sessions


def pooled_evidence(
    sessions: pd.DataFrame, per_ticker: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The gate's keys over all members' test days together."""
    summary = backtest_scores.summarize(sessions)
    out: dict[str, Any] = {
        "test_days": len(sessions),
        "first_test_date": f"{sessions['for_date'].min():%Y-%m-%d}",
        "last_test_date": f"{sessions['for_date'].max():%Y-%m-%d}",
        "units": "interval scores and MAE in % of the close; pooled over tickers",
    }
    for name, scores in summary["pooled"].items():
        out.update({f"{name}_{k}": v for k, v in scores.items()})
    last, actual = sessions["last_close"], sessions["actual"]
    out["naive_mase"], out["naive_directional_accuracy"] = 1.0, 0.5
    for who, column in (("model", "model_forecast_close"), ("naive", "last_close")):
        out[f"{who}_mae"] = float(np.mean(np.abs(sessions[column] - actual) / last) * 100)
    called = np.sign(sessions["model_forecast_close"] - last)
    hits = np.where(called == 0, 0.5, (called == np.sign(actual - last)).astype(float))
    out["model_directional_accuracy"] = float(np.mean(hits))
    if "production_forecast_close" in sessions:
        error = np.abs(sessions["production_forecast_close"] - actual) / last
        out["production_mae"] = float(np.mean(error) * 100)
    loss = ((sessions["model_forecast_close"] - actual) / last) ** 2
    naive_loss = ((last - actual) / last) ** 2
    daily = (loss - naive_loss).groupby(sessions["as_of"]).mean().to_numpy()
    out["dm_stat"], out["dm_pvalue"] = evaluate.diebold_mariano_losses(daily, np.zeros(len(daily)))
    for base, dm in summary["dm_pooled"].items():
        name = "" if base == "naive" else f"{base}_"
        out[f"interval_dm_{name}stat"], out[f"interval_dm_{name}pvalue"] = dm["stat"], dm["pvalue"]
    classical = backtest_scores.present(sessions, backtest_scores.CLASSICAL)
    out["best_baseline"] = min(classical, key=lambda b: out[f"{b}_interval_score_80"])
    out["tickers"] = {t: {k: r[k] for k in PER_TICKER if k in r} for t, r in per_ticker.items()}
    return out


def evaluate_universe(
    cfg: Config, feats: pd.DataFrame, day: dt.date, model_uri: str, production_uri: str | None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pooled evidence, and the per-day table (every member's test days)."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    production = (
        mlflow.pyfunc.load_model(production_uri).unwrap_python_model() if production_uri else None
    )
    bars = universe.member_bars(cfg, feats, day)
    per_ticker, tables = {}, []
    for ticker, member in universe.members(feats).items():
        per_ticker[ticker], sessions = member_sessions(
            ticker, bars[ticker], member, model, production
        )
        tables.append(sessions)
    sessions = pd.concat(tables, ignore_index=True)
    return pooled_evidence(sessions, per_ticker), sessions


def run_pooled(
    cfg: Config,
    feats: pd.DataFrame,
    day: dt.date,
    model_uri: str,
    prod_uri: str | None,
    parent_run_id: str,
) -> dict[str, Any]:
    """The universe model's evaluation (evaluate_universe.py), logged like a ticker's."""
    from pipeline.evaluation.plots import pyplot
    from pipeline.lifecycle import tracking

    result, sessions = evaluate_universe(cfg, feats, day, model_uri, prod_uri)
    result["production_version"] = prod_uri.rsplit("/", 1)[-1] if prod_uri else None
    mc = tracking.client(cfg)
    metrics = [
        evaluate._metric(f"test_{k}", v)
        for k, v in result.items()
        if isinstance(v, float) and math.isfinite(v)
    ]
    for ticker, scores in result["tickers"].items():
        metrics += [evaluate._metric(f"test_{ticker}_{k}", float(v)) for k, v in scores.items()]
    mc.log_batch(parent_run_id, metrics=metrics)
    for name, fig in backtest_scores.plots(sessions).items():
        mc.log_figure(parent_run_id, fig, name.replace("backtest_", "test_"))
        pyplot().close(fig)
    mc.log_table(
        parent_run_id,
        sessions.assign(
            as_of=sessions["as_of"].astype(str), for_date=sessions["for_date"].astype(str)
        ),
        "evaluation/test_days.json",
    )
    return result
