"""Human promotion and rollback: the CLI and the `model_promotion` DAG both call these.

Same checks as the daily gate unless forced: a version is re-evaluated against
naive and the current production model on the latest held-out days.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException

from pipeline import evaluate, registry, store, tracking
from pipeline.config import Config
from pipeline.registry import PromotionRefused


def latest_features(cfg: Config, ticker: str) -> Path:
    found = sorted((cfg.state / "features" / ticker).glob("*/features.parquet"))
    if not found:
        raise PromotionRefused(
            f"no features for {ticker} under {cfg.state}/features: run the "
            "pipeline first, or pass --force to skip the checks"
        )
    return found[-1]


def reevaluate(cfg: Config, ticker: str, version: str) -> dict[str, Any]:
    """Score `version`, naive and current production on the latest test days."""
    path = latest_features(cfg, ticker)
    feats = pd.read_parquet(path)
    day = path.parent.name
    bars = store.read_curated(cfg, ticker, until=day)
    name = registry.model_name(cfg, ticker)
    prod = registry.production_version(cfg, ticker)
    prod_uri = f"models:/{name}/{prod.version}" if prod and str(prod.version) != version else None
    result, _ = evaluate.evaluate_models(bars, feats, f"models:/{name}/{version}", prod_uri)
    result["production_version"] = str(prod.version) if prod_uri and prod else None
    return result


def _check_version(cfg: Config, ticker: str, version: str) -> None:
    name = registry.model_name(cfg, ticker)
    try:
        tracking.client(cfg).get_model_version(name, version)
    except MlflowException:
        raise PromotionRefused(f"{name} has no version {version}") from None
    current = registry.production_version(cfg, ticker)
    if current is not None and str(current.version) == version:
        raise PromotionRefused(f"{name} v{version} is already in production")


def promote(
    cfg: Config, ticker: str, version: str, reason: str, actor: str, force: bool = False
) -> dict[str, Any]:
    _check_version(cfg, ticker, version)
    if not force:
        ev = reevaluate(cfg, ticker, version)
        decision = registry.decide(
            ev,
            cfg.registry.naive_margin,
            cfg.registry.production_tolerance,
            registry.is_production_beatable(cfg, ticker),
        )
        if not decision.promote:
            raise PromotionRefused(f"refused: {decision.reason} (use --force to override)")
        reason = f"{reason} | gate: {decision.reason}"
    return _move(cfg, ticker, version, "promote", reason, actor, force)


def previous_production(cfg: Config, ticker: str) -> str | None:
    """The version production pointed at before its latest move (from the audit trail)."""
    current = registry.production_version(cfg, ticker)
    if current is None:
        return None
    for event in reversed(registry.audit_trail(cfg, ticker)):
        if event.get("action") in ("promote", "rollback") and event.get("to_version") == str(
            current.version
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
    target = to_version or previous_production(cfg, ticker)
    if target is None:
        raise PromotionRefused(
            f"{registry.model_name(cfg, ticker)}: no earlier production version to roll back to"
        )
    _check_version(cfg, ticker, target)
    if not force:  # the version must still beat naive; production is what we are leaving
        ev = reevaluate(cfg, ticker, target)
        ev.pop("production_mae", None)
        decision = registry.decide(ev, cfg.registry.naive_margin, 0.0)
        if not decision.promote:
            raise PromotionRefused(f"refused: v{target}: {decision.reason} (use --force)")
    return _move(cfg, ticker, target, "rollback", reason, actor, force)


def _move(
    cfg: Config, ticker: str, version: str, action: str, reason: str, actor: str, force: bool
) -> dict[str, Any]:
    return registry.move_production(cfg, ticker, version, action, reason, actor, forced=force)
