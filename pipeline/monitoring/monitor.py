"""Monitor: the realised error of earlier forecasts, against naive on the same days.

The forecast step (pipeline/monitoring/forecast.py) writes each day's next-session forecast;
a later run's monitor step fills in what happened, logs model and naive error to
MLflow, and keeps a rolling figure. When production has lost to naive over
`monitoring.window_days` realised days it says so loudly and tags the registered
model, so the next gate lets any naive-beating model in.

Intervals the same way: whether each realised close fell inside yesterday's 80 % and
95 % intervals, and the rolling 80 % coverage over the same window. Its alert needs the
coverage outside `registry.coverage_tolerance` *and* a binomial test saying so at the
5 % level: over 5 days an 80 % interval covers all five a third of the time by chance,
and a tolerance alone would then alert every few days on noise.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.carry import Monitored
from pipeline.config import Config
from pipeline.data import store
from pipeline.lifecycle import registry
from pipeline.monitoring.forecast import connect, read_forecasts

log = logging.getLogger(__name__)


def rolling(
    realised: pd.DataFrame, window: int, coverage_tolerance: float = 0.05
) -> dict[str, Any]:
    """Model vs naive MAE, and 80 % interval coverage, over the last `window` realised
    forecasts."""
    recent = realised.dropna(subset=["actual_close"]).tail(window)
    out = {
        "days": len(recent),
        "model_mae": float(recent["model_abs_error"].mean()),
        "naive_mae": float(recent["naive_abs_error"].mean()),
    }
    out["worse_than_naive"] = len(recent) >= window and out["model_mae"] > out["naive_mae"]
    out.update(losing_streak(recent, window))
    out.update(coverage_drift(recent, window, coverage_tolerance))
    return out


def losing_streak(recent: pd.DataFrame, window: int) -> dict[str, Any]:
    """Whether production lost to naive significantly, not by chance: a one-sided sign test
    on the days it was worse (5 %; over a 5-day window, all five). A point forecast that is
    about naive's loses a 5-day mean half the time; a retrain on that would be noise."""
    from scipy import stats

    worse = int((recent["model_abs_error"] > recent["naive_abs_error"]).sum())
    n = len(recent)
    p = float(stats.binomtest(worse, n, 0.5, alternative="greater").pvalue) if n else 1.0
    return {"worse_days": worse, "worse_pvalue": p, "losing": n >= window and p < 0.05}


def coverage_drift(recent: pd.DataFrame, window: int, tolerance: float) -> dict[str, Any]:
    """Rolling 80 % coverage and whether it has drifted: outside the tolerance and
    significantly so (two-sided binomial test, 5 %), over a full window."""
    from scipy import stats

    hits = recent["inside_80"].dropna() if "inside_80" in recent else pd.Series(dtype=float)
    if hits.empty:
        return {"coverage_days": 0, "coverage_drift": False}
    n, k = len(hits), int(hits.sum())
    cover, p = k / n, float(stats.binomtest(k, n, 0.8).pvalue)
    drift = n >= window and abs(cover - 0.8) > tolerance and p < 0.05
    return {
        "coverage_days": n,
        "coverage_80": cover,
        "coverage_pvalue": p,
        "coverage_drift": drift,
    }


def realise(cfg: Config, ticker: str, bars: pd.DataFrame) -> int:
    """Fill in actual closes and errors for forecasts whose day has now been seen."""
    closes = dict(zip(bars["Date"].dt.strftime("%Y-%m-%d"), bars["Close"], strict=True))
    with closing(connect(cfg)) as conn, conn:
        pending = conn.execute(
            "SELECT as_of, for_date, forecast_close, naive_close, lower_80, upper_80, lower_95,"
            " upper_95 FROM forecasts WHERE ticker = ? AND actual_close IS NULL",
            (ticker,),
        ).fetchall()
        done = 0
        for as_of, for_date, fc, naive, lo80, hi80, lo95, hi95 in pending:
            if for_date in closes:
                actual = float(closes[for_date])
                conn.execute(
                    "UPDATE forecasts SET actual_close = ?, model_abs_error = ?, "
                    "naive_abs_error = ?, inside_80 = ?, inside_95 = ? "
                    "WHERE ticker = ? AND as_of = ?",
                    (
                        actual,
                        abs(fc - actual),
                        abs(naive - actual),
                        _inside(actual, lo80, hi80),
                        _inside(actual, lo95, hi95),
                        ticker,
                        as_of,
                    ),
                )
                done += 1
    return done


def _inside(actual: float, lower: float | None, upper: float | None) -> int | None:
    return None if lower is None or upper is None else int(lower <= actual <= upper)


def check_drift(cfg: Config, ticker: str, bars: pd.DataFrame, prod: Any) -> dict[str, Any]:
    """The input drift check against the production version's training rows (none: no
    production version, nothing to compare with)."""
    from pipeline.data.features import make_features
    from pipeline.monitoring.drift import input_drift

    if prod is None or "first_test_date" not in prod.tags:
        return {"drift_checked": False}
    fc, mon = cfg.features, cfg.monitoring
    feats = make_features(bars, fc.volatility_window, fc.volume_window)
    end = dt.date.fromisoformat(prod.tags["first_test_date"])
    return input_drift(
        feats, end, mon.drift_window, mon.drift_outside, registry.version_day(cfg, prod)
    )


@dataclass
class Assessed:
    """One ticker's monitoring: the summary the report reads, what MLflow gets, alerts."""

    summary: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)


def assess(cfg: Config, ticker: str, day: dt.date, prod: Any) -> Assessed:
    """Realise pending forecasts and judge production on them; check the inputs' drift."""
    bars = store.read_adjusted(cfg, ticker, until=day)
    realise(cfg, ticker, bars)
    drift = check_drift(cfg, ticker, bars, prod)
    if drift.get("input_drift"):
        print(
            f"ALERT {ticker}: input drift: {drift['drift_outside_max']:.0%} of the last "
            f"{drift['drift_sessions']} sessions' {drift['drift_feature']} outside the "
            "training range"
        )
    table = read_forecasts(cfg, ticker).dropna(subset=["actual_close"])
    if prod is not None:  # judge the model in production, not the ones it replaced
        table = table[table["model_version"].astype(str) == str(prod.version)]
    if table.empty:
        return Assessed({"days": 0, **drift})
    summary = rolling(table, cfg.monitoring.window_days, cfg.registry.coverage_tolerance)
    summary.update(drift)
    latest = table.iloc[-1]
    metrics = {
        "realised_model_abs_error": latest["model_abs_error"],
        "realised_naive_abs_error": latest["naive_abs_error"],
        "rolling_model_mae": summary["model_mae"],
        "rolling_naive_mae": summary["naive_mae"],
        "rolling_days": summary["days"],
    }
    if pd.notna(latest.get("inside_80")):
        metrics["realised_inside_80"] = latest["inside_80"]
        metrics["realised_inside_95"] = latest["inside_95"]
    if summary["coverage_days"]:
        metrics["rolling_coverage_80"] = summary["coverage_80"]
        metrics["rolling_coverage_days"] = summary["coverage_days"]
    if drift.get("drift_checked"):
        metrics["drift_outside_max"] = drift["drift_outside_max"]
        metrics.update({f"drift_psi_{f}": v for f, v in drift["drift_psi"].items()})
    alerts = []
    if summary["worse_than_naive"]:
        alerts.append(
            f"production worse than naive over the last {summary['days']} "
            f"days (MAE {summary['model_mae']:.3f} vs {summary['naive_mae']:.3f})"
        )
    if summary["coverage_drift"]:
        alerts.append(
            f"80 % intervals covered {summary['coverage_80']:.0%} of the last "
            f"{summary['coverage_days']} closes (binomial p = {summary['coverage_pvalue']:.3f})"
        )
    tags = {"for_date": str(latest["for_date"]), "model_version": str(latest["model_version"])}
    return Assessed(summary, {k: float(v) for k, v in metrics.items()}, tags, alerts)


def run_many(cfg: Config, tickers: list[str], day: dt.date) -> dict[str, Monitored | Exception]:
    """Monitor many tickers: one production lookup per model, one MLflow run for them all
    (its metrics the ticker's own when there is one, else a per-ticker table artifact and
    pooled figures), the beatable tags set and cleared per ticker. A ticker whose
    assessment fails is returned as its exception; the others go on."""
    prods: dict[str, Any] = {}
    done: dict[str, Assessed] = {}
    out: dict[str, Monitored | Exception] = {}
    for ticker in tickers:
        name = registry.model_name(cfg, ticker)
        if name not in prods:  # the registry's errors go up: the task's retries take them
            prods[name] = registry.production_version(cfg, ticker)
        try:
            done[ticker] = assess(cfg, ticker, day, prods[name])
            out[ticker] = {"monitoring": done[ticker].summary}
        except Exception as exc:  # one ticker's problem is its own
            out[ticker] = exc
    logged = {t: a for t, a in done.items() if a.metrics}
    if logged:
        log_to_mlflow(cfg, day, logged)
    flag_beatable(cfg, done)
    return out


def log_to_mlflow(cfg: Config, day: dt.date, logged: dict[str, Assessed]) -> None:
    """One run in <experiment>_monitoring for the tickers monitored together."""
    mc = tracking.client(cfg)
    exp = tracking.experiment_id(cfg, f"{cfg.tracking.experiment}_monitoring")
    (one, first), many = next(iter(logged.items())), len(logged) > 1
    tags = {"day": day.isoformat(), "tickers": str(len(logged))}
    tags.update({} if many else {"ticker": one, **first.tags})
    name = f"{len(logged)} tickers {day}" if many else f"{one} {day}"
    run_ = mc.create_run(exp, run_name=name, tags=tags)
    if many:
        table = pd.DataFrame({t: a.metrics for t, a in logged.items()}).T
        table.index.name = "ticker"
        metrics = {
            "tickers": float(len(logged)),
            "alerts": float(sum(bool(a.alerts) for a in logged.values())),
            **{f"mean_{k}": float(table[k].mean()) for k in MEAN_METRICS if k in table},
        }
        mc.log_table(run_.info.run_id, table.reset_index(), "monitoring.json")
    else:
        metrics = first.metrics
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    mc.log_batch(run_.info.run_id, metrics=batch)  # one round trip, under MLflow's 1,000
    mc.set_terminated(run_.info.run_id)


MEAN_METRICS = ("realised_inside_80", "realised_inside_95", "rolling_coverage_80")


def flag_beatable(cfg: Config, done: dict[str, Assessed]) -> None:
    """Tag the registered model when production keeps losing on a ticker; clear the tag
    when it no longer does (each ticker's own tag on a model that serves several)."""
    mc = tracking.client(cfg)
    set_tags: dict[str, list[str]] = {}
    for ticker, a in done.items():
        name = registry.model_name(cfg, ticker)
        if name not in set_tags:
            set_tags[name] = registry.beatable_tags(cfg, ticker)
        tag = registry.beatable_tag(cfg, ticker)
        if a.alerts:
            msg = f"ALERT {name}: {'; '.join(a.alerts)}; " + (
                "the next training will replace it with any model that passes the gate"
                if tag == registry.BEATABLE_TAG
                else f"on {ticker} alone: the universe model is judged on all its stocks "
                "in the day's report (pipeline/operations/alarms.py)"
            )
            log.error(msg)
            print(msg)
            try:
                mc.set_registered_model_tag(name, tag, "true")
            except MlflowException:  # no such model yet (e.g. a new scope): nothing to flag
                log.warning("%s is not registered yet: the alert is not kept as a tag", name)
        elif tag in set_tags[name]:
            mc.delete_registered_model_tag(name, tag)


def run(cfg: Config, ticker: str, day: dt.date) -> Monitored:
    """Realise pending forecasts, log them, and flag production if it keeps losing to naive;
    check the model's inputs for drift."""
    out = run_many(cfg, [ticker], day)[ticker]
    if isinstance(out, Exception):
        raise out
    return out
