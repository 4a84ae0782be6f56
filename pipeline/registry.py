"""Registry: one registered model per ticker (`<prefix>_<TICKER>`), aliases not stages.

Every run registers a version with alias `candidate` and its evidence as tags.
`production` moves only through promote()/rollback(), which apply the gate
(unless forced) and write an audit event: a run in the `<experiment>_audit`
experiment, so the trail lives in the tracking store next to the models.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import pwd
import socket
from dataclasses import dataclass
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.config import Config, RegistryConfig
from pipeline.layout import check_ticker

log = logging.getLogger(__name__)
CANDIDATE, PRODUCTION = "candidate", "production"
BEATABLE_TAG = "production_beatable"  # set by monitoring when production loses to naive


class PromotionRefused(RuntimeError):
    """A promote/rollback request the gate turned down; the message says why."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def model_name(cfg: Config, ticker: str) -> str:
    """The registered model that serves a ticker: the universe model (`model.scope:
    universe`) or the ticker's own. The ticker is checked here too, as every registry
    lookup, filter string and alias move goes through this name."""
    from pipeline.universe import model_key

    return f"{cfg.registry.model_prefix}_{model_key(cfg, check_ticker(ticker))}"


BASELINE_NAMES = {"naive": "naive", "ewma": "EWMA", "har": "HAR", "garch": "GJR-GARCH-t"}


def decide(ev: dict[str, Any], gate: RegistryConfig, production_beatable: bool = False) -> Decision:
    """The promotion gate, rule by rule; the reason names the rule (and the baseline).

    1. point: the point forecast is not significantly worse than naive (Diebold-Mariano
       at `gate.significance`) nor worse by more than `gate.point_tolerance` in MASE: on
       daily prices the drift and tomorrow=today are indistinguishable, so demanding
       "MASE below 1" decided by a coin flip;
    2. intervals, where the model earns promotion: its 80 % interval score is at least as
       good as the best baseline's (naive, EWMA, HAR, GJR-GARCH-t) on the same days, and
       its 80 % coverage is within `gate.coverage_tolerance` of nominal;
    3. production: no worse than the model in production on the same days.
    """
    refused = point_refusal(ev, gate) or interval_refusal(ev, gate) or ticker_refusal(ev, gate)
    if refused:
        return Decision(False, refused)
    earned = earned_by(ev)
    prod_mae = ev.get("production_mae")
    if prod_mae is None:
        return Decision(True, f"{earned}; no production model yet")
    if production_beatable:
        return Decision(
            True,
            f"{earned}; production v{ev.get('production_version')} has been losing to naive lately",
        )
    if ev["model_mae"] > prod_mae * (1 + gate.production_tolerance):
        return Decision(
            False,
            f"production rule: MAE {ev['model_mae']:.4f} is worse than production v"
            f"{ev.get('production_version')} ({prod_mae:.4f}) on the same days",
        )
    return Decision(
        True,
        f"{earned}; no worse than production v{ev.get('production_version')} "
        f"(MAE {ev['model_mae']:.4f} <= {prod_mae:.4f}) on the same days",
    )


def point_refusal(ev: dict[str, Any], gate: RegistryConfig) -> str | None:
    mase = ev["model_mase"]
    limit = 1.0 - gate.naive_margin + gate.point_tolerance
    if mase > limit:
        return (
            f"point rule: MASE {mase:.4f} vs naive is above {limit:.4f} "
            "(registry.naive_margin, point_tolerance): the model is worse than tomorrow=today"
        )
    stat, pvalue = ev.get("dm_stat"), ev.get("dm_pvalue")
    if stat is not None and pvalue is not None and stat > 0 and pvalue < gate.significance:
        return (
            f"point rule: the point forecast is significantly worse than naive (MASE "
            f"{mase:.4f}, Diebold-Mariano p = {pvalue:.3g} < {gate.significance})"
        )
    return None


def ticker_refusal(ev: dict[str, Any], gate: RegistryConfig) -> str | None:
    """A model judged on several tickers together must not lose to the naive interval on
    any one of them by more than `gate.ticker_tolerance` (a pooled win can hide one)."""
    for ticker, scores in (ev.get("tickers") or {}).items():
        score, naive = scores.get("model_interval_score_80"), scores.get("naive_interval_score_80")
        if score is None or naive is None:
            continue
        if score > naive * (1 + gate.ticker_tolerance):
            return (
                f"ticker rule: on {ticker} the 80 % interval score {score:.4f} is worse than "
                f"the naive interval's ({naive:.4f}) by more than "
                f"{gate.ticker_tolerance:.0%} (registry.ticker_tolerance)"
            )
    return None


def best_baseline(ev: dict[str, Any]) -> tuple[str, float] | None:
    """The baseline with the lowest 80 % interval score among those the evidence holds."""
    scores = {
        b: ev[f"{b}_interval_score_80"] for b in BASELINE_NAMES if f"{b}_interval_score_80" in ev
    }
    return min(scores.items(), key=lambda kv: kv[1]) if scores else None


def interval_refusal(ev: dict[str, Any], gate: RegistryConfig) -> str | None:
    """Why the model's 80 % intervals fail the gate, or None (also when it has none)."""
    score, best = ev.get("model_interval_score_80"), best_baseline(ev)
    if score is None or best is None:
        return None
    name, limit = best
    if score > limit * (1 + gate.interval_tolerance):
        return (
            f"interval rule: 80 % interval score {score:.4f} is worse than the best "
            f"baseline's, {BASELINE_NAMES[name]} ({limit:.4f}), on the same days"
        )
    cover = ev["model_coverage_80"]
    if abs(cover - 0.8) > gate.coverage_tolerance:
        return (
            f"interval rule: 80 % interval coverage {cover:.1%} is more than "
            f"{gate.coverage_tolerance:.0%} from nominal 80 % (registry.coverage_tolerance): "
            "the intervals are not calibrated"
        )
    return None


def earned_by(ev: dict[str, Any]) -> str:
    point = f"point forecast no worse than naive (MASE {ev['model_mase']:.4f})"
    best, score = best_baseline(ev), ev.get("model_interval_score_80")
    if best is None or score is None:
        return point
    return (
        f"{point}; 80 % interval score {score:.4f} <= the best baseline's, "
        f"{BASELINE_NAMES[best[0]]} ({best[1]:.4f})"
    )


def version_by_alias(cfg: Config, name: str, alias: str) -> ModelVersion | None:
    try:
        return tracking.client(cfg).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def production_version(cfg: Config, ticker: str) -> ModelVersion | None:
    return version_by_alias(cfg, model_name(cfg, ticker), PRODUCTION)


def beatable_tag(cfg: Config, ticker: str) -> str:
    """The tag monitoring sets when production loses on `ticker`: one per ticker on a model
    that serves several (each ticker's monitor sets and clears only its own)."""
    from pipeline.universe import UNIVERSE, model_key

    key = model_key(cfg, ticker)
    return BEATABLE_TAG if key == ticker or ticker == UNIVERSE else f"{BEATABLE_TAG}.{ticker}"


def beatable_tags(cfg: Config, ticker: str) -> list[str]:
    """The set beatable tags of the model that serves `ticker` (any of its tickers')."""
    try:
        model = tracking.client(cfg).get_registered_model(model_name(cfg, ticker))
    except MlflowException:
        return []
    return [k for k, v in model.tags.items() if k.startswith(BEATABLE_TAG) and v == "true"]


def is_production_beatable(cfg: Config, ticker: str) -> bool:
    """Monitoring says production keeps losing: on `ticker`, or, asked for the universe
    model itself, on any of its tickers."""
    from pipeline.universe import UNIVERSE

    tags = beatable_tags(cfg, ticker)
    return bool(tags) if ticker == UNIVERSE else beatable_tag(cfg, ticker) in tags


def register(
    cfg: Config, ticker: str, model_uri: str, run_id: str, evidence: dict[str, Any]
) -> str:
    """New version from the run's model, alias `candidate`, evidence as version tags."""
    import mlflow

    mc = tracking.client(cfg)
    name = model_name(cfg, ticker)
    try:
        mc.get_registered_model(name)
    except MlflowException:
        mc.create_registered_model(name, description=f"Next-day close forecaster: {ticker}")
    version = str(mlflow.register_model(model_uri, name, tags={"run_id": run_id}).version)
    for key, value in evidence.items():
        mc.set_model_version_tag(name, version, key, _tag(value))
    mc.set_registered_model_alias(name, CANDIDATE, version)
    return str(version)


def evidence(
    evaluation: dict[str, Any],
    fingerprint: dict[str, Any],
    params: dict[str, Any],
    validation: dict[str, Any],
) -> dict[str, Any]:
    """What a registered version carries as tags: why anyone should trust it."""
    keys = [
        k
        for k in evaluation
        if k.startswith(
            (
                "model_",
                "naive_",
                "ewma_",
                "har_",
                "garch_",
                "production_",
                "dm_",
                "interval_dm_",
                "best_baseline",
            )
        )
    ]
    return {
        **{k: evaluation[k] for k in keys},
        "first_test_date": evaluation["first_test_date"],
        "last_test_date": evaluation["last_test_date"],
        "data_fingerprint": fingerprint,
        "validation": validation,
        "params": params,
        "code_version": tracking.code_version(),
    }


def _tag(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def record(cfg: Config, event: dict[str, Any]) -> None:
    """Append one audit event (a run in the audit experiment, tags only)."""
    mc = tracking.client(cfg)
    exp = tracking.experiment_id(cfg, f"{cfg.tracking.experiment}_audit")
    event = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **event}
    run = mc.create_run(
        exp,
        run_name=f"{event['action']} {event['model']}",
        tags={k: _tag(v) for k, v in event.items() if v is not None},
    )
    mc.set_terminated(run.info.run_id)
    log.info("audit: %s", event)


def audit_trail(cfg: Config, ticker: str) -> list[dict[str, str]]:
    mc = tracking.client(cfg)
    exp = mc.get_experiment_by_name(f"{cfg.tracking.experiment}_audit")
    if exp is None:
        return []
    runs = mc.search_runs(
        [exp.experiment_id],
        f"tags.model = '{model_name(cfg, ticker)}'",
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )
    keep = (
        "at",
        "action",
        "model",
        "from_version",
        "to_version",
        "reason",
        "actor",
        "forced",
        "run_id",
        "os_user",
        "host",
        "airflow_run",
    )
    return [{k: r.data.tags[k] for k in keep if k in r.data.tags} for r in runs]


def move_production(
    cfg: Config,
    ticker: str,
    version: str,
    action: str,
    reason: str,
    actor: str,
    forced: bool = False,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Point `production` at `version` and write the audit event (returned)."""
    name = model_name(cfg, ticker)
    before = production_version(cfg, ticker)
    mc = tracking.client(cfg)
    mc.set_registered_model_alias(name, PRODUCTION, version)
    mc.set_model_version_tag(name, version, "promoted_reason", reason)
    for tag in beatable_tags(cfg, ticker):  # a new production model starts with a clean slate
        mc.delete_registered_model_tag(name, tag)
    event = {
        "action": action,
        "model": name,
        "from_version": str(before.version) if before else None,
        "to_version": version,
        "reason": reason,
        "actor": actor,  # who the caller says asked (--actor), kept next to who really ran it
        "forced": forced,
        "run_id": run_id,
        **identity(),
    }
    record(cfg, event)
    return event


def promote_if_better(
    cfg: Config, ticker: str, version: str, evaluation: dict[str, Any], run_id: str
) -> dict[str, Any]:
    """The DAG's gate: move `production` to `version` only if the evidence earns it."""
    decision = decide(evaluation, cfg.registry, is_production_beatable(cfg, ticker))
    name = model_name(cfg, ticker)
    mc = tracking.client(cfg)
    mc.set_model_version_tag(name, version, "gate", "passed" if decision.promote else "refused")
    mc.set_model_version_tag(name, version, "gate_reason", decision.reason)
    mc.set_tag(
        run_id,
        "promotion",
        ("promoted: " if decision.promote else "not promoted: ") + decision.reason,
    )
    if decision.promote:
        move_production(
            cfg,
            ticker,
            version,
            "promote",
            decision.reason,
            actor=f"pipeline run {run_id}",
            run_id=run_id,
        )
    else:
        record(
            cfg,
            {
                "action": "refused",
                "model": name,
                "to_version": version,
                "reason": decision.reason,
                "actor": f"pipeline run {run_id}",
                "run_id": run_id,
            },
        )
    current = production_version(cfg, ticker)
    return {
        "model_name": name,
        "version": version,
        "promoted": decision.promote,
        "reason": decision.reason,
        "production_version": str(current.version) if current else None,
    }


def identity() -> dict[str, str | None]:
    """Who really moved the alias, whatever --actor claims: the OS account and host of the
    process, and the Airflow DAG run when a task did it."""
    airflow = [os.environ.get(k) for k in ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID")]
    return {
        "os_user": os_account(),
        "host": socket.gethostname(),
        "airflow_run": "/".join(a for a in airflow if a) or None,
    }


def os_account() -> str:
    """The account this process runs as, from its uid (getpass trusts $USER, anyone can set it)."""
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:  # a uid with no passwd entry, as in some containers
        return f"uid {uid}"


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
