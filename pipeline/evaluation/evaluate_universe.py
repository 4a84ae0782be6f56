"""Evaluate the universe model: on every member's own test days, scored per ticker and pooled.

Per ticker, the same comparison as a per-ticker model gets (evaluate.py: naive, EWMA,
HAR, GJR-GARCH-t and production on the same days). Pooled over tickers, with the
walk-forward backtest's scoring (backtest_scores.py): interval scores and MAE in % of the
close, so that a $30 and an $800 stock weigh alike, and Diebold-Mariano tests on the
per-session mean difference over tickers. The pooled numbers carry the same keys as a
per-ticker evaluation (the gate reads them alike); `tickers` holds the few of each
member's own that the gate reads (PER_TICKER).

Its cost stays within a retrain's budget at hundreds of tickers (394 S&P 500 stocks,
about 72,000 test sessions: bench/training_cost.py --universe sp500):
- every test window of every member is forecast, in one batched pass through the network
  (PriceForecaster.forecast_many), not one `predict` per ticker;
- HAR and GJR-GARCH-t are fitted once per ticker, on the rows before its test days, then
  run forward with those parameters (evaluate.baselines): a GJR-GARCH-t fit costs 20-30
  ms, so refitting per day and ticker would take hours;
- per-ticker results go to a table artifact, `evaluation/per_ticker.csv` (every score of
  every member, and why any was left out), never to a metric or tag each: MLflow takes at
  most 1,000 metrics and 100 tags a call. The run's metrics are the pooled figures.

A member without a test day, or with fewer than MIN_HISTORY sessions before its test days
(listed a few months ago: its baselines cannot be fitted), is left out of the comparison
and named in `tickers_left_out` with the reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.data import universe
from pipeline.evaluation import backtest_scores, evaluate
from pipeline.evaluation.backtest import losses
from pipeline.evaluation.statistics import diebold_mariano_losses

PER_TICKER = (  # what the evaluation (and so the gate) keeps of each member's scores
    "model_interval_score_80",
    "naive_interval_score_80",
    "har_interval_score_80",
    "model_coverage_80",
    "model_mase",
    "test_days",
    "interval_dm_stat",  # the model's 80 % interval score against naive's on its test days
    "interval_dm_pvalue",
)
MIN_HISTORY = 250  # sessions before a member's test days, for its baselines to be fitted on
PER_TICKER_ARTIFACT = "evaluation/per_ticker.csv"
SESSIONS_ARTIFACT = "evaluation/test_days.parquet"


def member_sessions(
    ticker: str,
    bars: pd.DataFrame,
    feats: pd.DataFrame,
    model: pd.DataFrame,
    production: pd.DataFrame | None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One member: its evaluation (as a per-ticker model's) and its per-day losses, from the
    model's (and production's) forecasts over its bars (PriceForecaster.forecast_many)."""
    days = evaluate.test_days(feats)
    fc = evaluate.align(days, model)
    prod = evaluate.align(days, production) if production is not None else None
    result = evaluate.compare(
        days,
        fc["forecast_close"].to_numpy(),
        prod["forecast_close"].to_numpy() if prod is not None else None,
    )
    base = evaluate.baselines(days, bars, feats)
    result.update(evaluate.compare_intervals(days, fc, prod, base))
    every = {"model": evaluate.calibrated(days, fc), **{k.rstrip("_"): f for k, f in base.items()}}
    cols: dict[str, np.ndarray] = {}
    for name, forecast in every.items():
        cols.update(losses(days, name, forecast))
    sessions = pd.concat([days.assign(ticker=ticker), pd.DataFrame(cols, index=days.index)], axis=1)
    if prod is not None:
        sessions["production_forecast_close"] = prod["forecast_close"].to_numpy()
    return result, sessions


def left_out(feats: pd.DataFrame) -> str | None:
    """Why a member cannot be compared on its test days, or None."""
    split = feats["split"]
    if not (split == "test").any():
        return "no test day"
    before = int(split.isin(["train", "val"]).sum())
    if before < MIN_HISTORY:
        return (
            f"{before} sessions before its test days, fewer than the {MIN_HISTORY} its "
            "baselines are fitted on"
        )
    return None


def pooled_evidence(
    sessions: pd.DataFrame, per_ticker: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The gate's keys over all members' test days together."""
    days = backtest_scores.with_losses(sessions)  # pooled scores only: per ticker, see above
    out: dict[str, Any] = {
        "test_days": len(sessions),
        "first_test_date": f"{sessions['for_date'].min():%Y-%m-%d}",
        "last_test_date": f"{sessions['for_date'].max():%Y-%m-%d}",
        "units": "interval scores and MAE in % of the close; pooled over tickers",
    }
    for name, scores in backtest_scores.scores(days).items():
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
    out["dm_stat"], out["dm_pvalue"] = diebold_mariano_losses(daily, np.zeros(len(daily)))
    for base, dm in backtest_scores.dm_against_baselines(days).items():
        name = "" if base == "naive" else f"{base}_"
        out[f"interval_dm_{name}stat"], out[f"interval_dm_{name}pvalue"] = dm["stat"], dm["pvalue"]
    classical = backtest_scores.present(sessions, backtest_scores.CLASSICAL)
    out["best_baseline"] = min(classical, key=lambda b: out[f"{b}_interval_score_80"])
    out["tickers"] = {t: {k: r[k] for k in PER_TICKER if k in r} for t, r in per_ticker.items()}
    return out


@dataclass(frozen=True)
class UniverseEvaluation:
    result: dict[str, Any]  # the pooled evidence (the gate's keys), PER_TICKER per member
    sessions: pd.DataFrame  # every member's test days, with every forecaster's losses
    per_ticker: pd.DataFrame  # a row per member: all its scores, or why it was left out


def per_ticker_table(
    per_ticker: dict[str, dict[str, Any]], skipped: dict[str, str]
) -> pd.DataFrame:
    """Every member's own evaluation, one row each, and the members left out with why."""
    scored = pd.DataFrame.from_dict(per_ticker, orient="index")
    rows = [scored.assign(left_out="")]
    if skipped:
        rows.append(pd.DataFrame({"left_out": pd.Series(skipped, dtype=object)}))
    return pd.concat(rows).rename_axis("ticker").reset_index()


def score_universe(
    cfg: Config, feats: pd.DataFrame, day: dt.date, model_uri: str, production_uri: str | None
) -> UniverseEvaluation:
    """Every member scored on its test days (forecasts batched over members), and the
    pooled evidence."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    production = (
        mlflow.pyfunc.load_model(production_uri).unwrap_python_model() if production_uri else None
    )
    bars = universe.member_bars(cfg, feats, day)
    members = universe.members(feats)
    skipped = {t: why for t, f in members.items() if (why := left_out(f))}
    scored = {t: f for t, f in members.items() if t not in skipped}
    if not scored:
        raise ValueError(f"no member of the universe can be evaluated: {skipped}")
    since = {t: f.loc[f["split"] == "test", "Date"].min() for t, f in scored.items()}
    inputs = {t: bars[t] for t in scored}
    forecasts = model.forecast_many(inputs, since)
    prod = production.forecast_many(inputs, since) if production is not None else {}
    per_ticker, tables = {}, []
    for ticker, member in scored.items():
        per_ticker[ticker], sessions = member_sessions(
            ticker, bars[ticker], member, forecasts[ticker], prod.get(ticker)
        )
        tables.append(sessions)
    sessions = pd.concat(tables, ignore_index=True)
    result = pooled_evidence(sessions, per_ticker)
    result["tickers_scored"] = len(per_ticker)
    if skipped:
        result["tickers_left_out"] = skipped
    return UniverseEvaluation(result, sessions, per_ticker_table(per_ticker, skipped))


def evaluate_universe(
    cfg: Config, feats: pd.DataFrame, day: dt.date, model_uri: str, production_uri: str | None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pooled evidence, and the per-day table (every member's test days)."""
    found = score_universe(cfg, feats, day, model_uri, production_uri)
    return found.result, found.sessions
