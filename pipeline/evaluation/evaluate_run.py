"""The retrain's evaluate step: a ticker's model or the universe's, scored and logged.

Every evaluation run, the single-ticker one, the pooled one and the walk-forward
backtest (backtest_run.py), logs through `log_evaluation`: finite float metrics in
batches under MLflow's 1,000-metric limit, figures closed once logged, tables written
whole (a retried step replaces them).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline import tracking
from pipeline.config import Config
from pipeline.data import store, universe
from pipeline.evaluation.backtest_scores import plots
from pipeline.evaluation.evaluate import evaluate_models
from pipeline.evaluation.evaluate_universe import (
    PER_TICKER_ARTIFACT,
    SESSIONS_ARTIFACT,
    score_universe,
)
from pipeline.evaluation.plots import plot_fan, plot_forecasts, plot_pit, pyplot
from pipeline.layout import version_uri


def log_evaluation(
    cfg: Config,
    run_id: str,
    metrics: Mapping[str, Any],
    figures: Mapping[str, Any] | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
    texts: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
) -> None:
    """An evaluation's figures on run `run_id`: the finite numbers in `metrics` (others,
    such as the best baseline's name, are not metrics), each figure (then closed: pyplot
    keeps every figure until it is), each frame as Parquet and each text, under the
    artifact path that is its key, and each local file into the artifact folder that is
    its value."""
    mc = tracking.client(cfg)
    finite = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    tracking.log_metrics(mc, run_id, finite)
    for name, fig in (figures or {}).items():
        mc.log_figure(run_id, fig, name)
        pyplot().close(fig)
    for name, frame in (frames or {}).items():
        tracking.log_frame(mc, run_id, frame, name)
    for name, text in (texts or {}).items():
        mc.log_text(run_id, text, name)
    for path, folder in (files or {}).items():
        mc.log_artifact(run_id, path, folder)


def run(
    cfg: Config,
    ticker: str,
    day: dt.date,
    features_path: str,
    model_uri: str,
    parent_run_id: str,
    production: Any,
) -> dict[str, Any]:
    """The model (and `production`, the registered version in production the caller looked
    up, or None) against every baseline on the test days, logged to the parent run."""
    feats = pd.read_parquet(features_path)
    prod_uri = version_uri(production.name, production.version) if production else None
    if universe.is_pooled(feats):
        result = run_pooled(cfg, feats, day, model_uri, prod_uri, parent_run_id)
    else:
        result = run_ticker(cfg, ticker, day, feats, model_uri, prod_uri, parent_run_id)
    result["production_version"] = str(production.version) if production else None
    return result


def run_ticker(
    cfg: Config,
    ticker: str,
    day: dt.date,
    feats: pd.DataFrame,
    model_uri: str,
    prod_uri: str | None,
    parent_run_id: str,
) -> dict[str, Any]:
    """One ticker's model on its test days: metrics, forecast plots and the daily table."""
    bars = store.read_adjusted(cfg, ticker, until=day)
    result, table = evaluate_models(bars, feats, model_uri, prod_uri)
    figures = {"plots/test_forecasts.png": plot_forecasts(table)}
    if "pit" in table:
        figures["plots/test_fan.png"] = plot_fan(table)
        figures["plots/test_pit.png"] = plot_pit(table)
    metrics = {f"test_{k}": v for k, v in result.items()}
    log_evaluation(cfg, parent_run_id, metrics, figures, {SESSIONS_ARTIFACT: table})
    return result


def run_pooled(
    cfg: Config,
    feats: pd.DataFrame,
    day: dt.date,
    model_uri: str,
    prod_uri: str | None,
    parent_run_id: str,
) -> dict[str, Any]:
    """The universe model's evaluation, logged like a ticker's: the pooled figures as
    metrics, the per-ticker results and the per-day table as artifacts."""
    found = score_universe(cfg, feats, day, model_uri, prod_uri)
    figures = {k.replace("backtest_", "test_"): fig for k, fig in plots(found.sessions).items()}
    log_evaluation(
        cfg,
        parent_run_id,
        {f"test_{k}": v for k, v in found.result.items()},
        figures,
        {SESSIONS_ARTIFACT: found.sessions},
        {PER_TICKER_ARTIFACT: found.per_ticker.to_csv(index=False)},
    )
    return found.result
