"""Moves of `production`: the daily gate's step, and human promotion and rollback.

`run()` is the DAG's promote step. `promote()`/`rollback()` serve the CLI and the
`model_promotion` DAG, with the same checks as the daily gate unless forced: a
version is re-evaluated against naive and the current production model on the
latest held-out days.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.config import Config
from pipeline.data import store
from pipeline.evaluation import evaluate
from pipeline.layout import version_uri
from pipeline.lifecycle import audit, registry
from pipeline.lifecycle.gate import decide
from pipeline.lifecycle.registry import PromotionRefused


def summary(promo: dict[str, Any], ev: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The contract line of `python -m pipeline run`."""
    pick = ("mae", "mase", "directional_accuracy")
    return {
        "model_name": promo["model_name"],
        "version": promo["version"],
        "promoted": promo["promoted"],
        "reason": promo["reason"],
        "production_version": promo["production_version"],
        "run_id": run_id,
        "first_test_date": ev["first_test_date"],
        "last_test_date": ev["last_test_date"],
        "test_days": ev["test_days"],
        "model": {k: ev[f"model_{k}"] for k in pick},
        "naive": {k: ev[f"naive_{k}"] for k in pick},
        **interval_summary(ev),
    }


def interval_summary(ev: dict[str, Any]) -> dict[str, Any]:
    """The run line's interval keys: per forecaster (the model and every baseline, as far as
    the evaluation has them) coverage with its Kupiec and Christoffersen p-values, interval
    scores, CRPS and QLIKE; the DM test of the model's 80 % interval score vs each baseline
    (`interval_dm_*` is vs naive, kept as it was); the best baseline."""
    if "model_coverage_80" not in ev:
        return {}
    pick = (
        "coverage_80",
        "coverage_95",
        "kupiec_pvalue_80",
        "kupiec_pvalue_95",
        "christoffersen_pvalue_80",
        "christoffersen_pvalue_95",
        "interval_score_80",
        "interval_score_95",
        "crps",
        "qlike",
    )
    who = [w for w in ("model", "naive", "ewma", "har", "garch") if f"{w}_coverage_80" in ev]
    return {
        "intervals": {w: {k: ev[f"{w}_{k}"] for k in pick if f"{w}_{k}" in ev} for w in who},
        "interval_dm_stat": ev["interval_dm_stat"],
        "interval_dm_pvalue": ev["interval_dm_pvalue"],
        "interval_dm": {
            w: {"stat": ev[f"interval_dm_{w}_stat"], "pvalue": ev[f"interval_dm_{w}_pvalue"]}
            for w in who
            if f"interval_dm_{w}_stat" in ev
        },
        "best_baseline": ev.get("best_baseline"),
    }


def run(
    cfg: Config, ticker: str, version: str, evaluation: dict[str, Any], parent_run_id: str
) -> dict[str, Any]:
    """The daily gate on a new version; closes the pipeline run and returns its summary."""
    promo = registry.promote_if_better(cfg, ticker, version, evaluation, parent_run_id)
    tracking.client(cfg).set_terminated(parent_run_id, "FINISHED")
    return summary(promo, evaluation, parent_run_id)


def latest_features(cfg: Config, ticker: str) -> Path:
    found = cfg.layout.latest_features(ticker)
    if found is None:
        raise PromotionRefused(
            f"no features for {ticker} under {cfg.state}: run the "
            "pipeline first, or pass --force to skip the checks"
        )
    return found


def reevaluate(
    cfg: Config, ticker: str, version: str, name: str, prod: ModelVersion | None
) -> dict[str, Any]:
    """Score `name` v`version`, naive and `prod` (production now, or None) on the latest
    test days (of every member, pooled, for the universe model)."""
    from pipeline.data import universe
    from pipeline.evaluation.evaluate_universe import evaluate_universe

    path = latest_features(cfg, universe.model_key(cfg, ticker))
    feats = pd.read_parquet(path)
    day = dt.date.fromisoformat(path.parent.name)
    prod_uri = version_uri(name, prod.version) if prod and str(prod.version) != version else None
    if universe.is_pooled(feats):
        result, _ = evaluate_universe(cfg, feats, day, version_uri(name, version), prod_uri)
    else:
        bars = store.read_adjusted(cfg, ticker, until=day)
        result, _ = evaluate.evaluate_models(bars, feats, version_uri(name, version), prod_uri)
    result["production_version"] = str(prod.version) if prod_uri and prod else None
    return result


def _check_version(cfg: Config, name: str, version: str, prod: ModelVersion | None) -> None:
    try:
        found = tracking.client(cfg).get_model_version(name, version)
    except MlflowException:
        raise PromotionRefused(f"{name} has no version {version}") from None
    if found.tags.get(registry.EVIDENCE) == "incomplete":
        raise PromotionRefused(
            f"{name} v{version} was registered without all its evidence (its run was "
            "interrupted): it cannot be promoted, --force or not"
        )
    if prod is not None and str(prod.version) == version:
        raise PromotionRefused(f"{name} v{version} is already in production")
    _check_loads(name, version)


def _check_loads(name: str, version: str) -> None:
    """Refuse, forced or not, a version whose model cannot be loaded (artifacts missing or
    unreadable): production would point at it while servers cannot serve it."""
    import mlflow

    try:
        mlflow.pyfunc.load_model(version_uri(name, version))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise PromotionRefused(
            f"{name} v{version} cannot be loaded ({type(exc).__name__}: {first}); "
            "production stays where it is, --force or not"
        ) from None


def promote(
    cfg: Config, ticker: str, version: str, reason: str, actor: str, force: bool = False
) -> dict[str, Any]:
    """Move production to `version` on a person's word: checked, and unless `force`d,
    re-evaluated and gated. The model's name and production version are looked up once;
    the move reads production again under the registry's lock."""
    from pipeline.data.universe import model_key

    name, prod = registry.model_name(cfg, ticker), registry.production_version(cfg, ticker)
    _check_version(cfg, name, version, prod)
    if not force:
        ev = reevaluate(cfg, ticker, version, name, prod)
        beatable = registry.production_beatable(cfg, model_key(cfg, ticker), prod)
        decision = decide(ev, cfg.registry, beatable)
        if not decision.promote:
            raise PromotionRefused(f"refused: {decision.reason} (use --force to override)")
        reason = f"{reason} | gate: {decision.reason}"
    return _move(cfg, ticker, version, "promote", reason, actor, force)


def previous_production(cfg: Config, current: ModelVersion | None) -> str | None:
    """The version production (`current`) pointed at before its latest move (from the
    audit trail)."""
    if current is None:
        return None
    for event in reversed(audit.audit_trail(cfg, current.name)):
        applied = event.get("state") != "not applied"  # pending: production may have moved
        if (
            applied
            and event.get("action") in ("promote", "rollback")
            and event.get("to_version") == str(current.version)
        ):
            return event.get("from_version")
    return None


def rollback(
    cfg: Config,
    ticker: str,
    reason: str,
    actor: str,
    force: bool = False,
    to_version: str | None = None,
) -> dict[str, Any]:
    """Point production back at the previous version (or `to_version`)."""
    name, prod = registry.model_name(cfg, ticker), registry.production_version(cfg, ticker)
    target = to_version or previous_production(cfg, prod)
    if target is None:
        raise PromotionRefused(f"{name}: no earlier production version to roll back to")
    _check_version(cfg, name, target, prod)
    if not force:  # the version must still beat naive; production is what we are leaving
        ev = reevaluate(cfg, ticker, target, name, None)
        decision = decide(ev, cfg.registry)
        if not decision.promote:
            raise PromotionRefused(f"refused: v{target}: {decision.reason} (use --force)")
    return _move(cfg, ticker, target, "rollback", reason, actor, force)


def _move(
    cfg: Config, ticker: str, version: str, action: str, reason: str, actor: str, force: bool
) -> dict[str, Any]:
    return registry.move_production(cfg, ticker, version, action, reason, actor, forced=force)
