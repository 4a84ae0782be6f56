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
from pipeline.config import Config
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
    """The registered model of a ticker; the ticker is checked here too, as every registry
    lookup, filter string and alias move goes through this name."""
    return f"{cfg.registry.model_prefix}_{check_ticker(ticker)}"


def decide(
    ev: dict[str, Any],
    naive_margin: float,
    tolerance: float,
    production_beatable: bool = False,
    coverage_tolerance: float = 0.05,
) -> Decision:
    """The promotion gate: beat naive by the margin, give intervals no worse than the naive
    interval and calibrated within the tolerance, and be no worse than production."""
    mase, limit = ev["model_mase"], 1.0 - naive_margin
    if not mase < limit:
        return Decision(
            False,
            f"MASE {mase:.4f} vs naive is not below {limit:.4f}: "
            "the model does not beat tomorrow=today",
        )
    refused = interval_refusal(ev, coverage_tolerance)
    if refused:
        return Decision(False, refused)
    prod_mae = ev.get("production_mae")
    if prod_mae is None:
        return Decision(True, f"beats naive (MASE {mase:.4f}); no production model yet")
    if production_beatable:
        return Decision(
            True,
            f"beats naive (MASE {mase:.4f}); production v"
            f"{ev.get('production_version')} has been losing to naive lately",
        )
    if ev["model_mae"] > prod_mae * (1 + tolerance):
        return Decision(
            False,
            f"MAE {ev['model_mae']:.4f} is worse than production v"
            f"{ev.get('production_version')} ({prod_mae:.4f}) on the same days",
        )
    return Decision(
        True,
        f"beats naive (MASE {mase:.4f}) and production v"
        f"{ev.get('production_version')} (MAE {ev['model_mae']:.4f} <= "
        f"{prod_mae:.4f}) on the same days",
    )


def interval_refusal(ev: dict[str, Any], coverage_tolerance: float) -> str | None:
    """Why the model's 80 % intervals fail the gate, or None (also when it has none)."""
    score, naive = ev.get("model_interval_score_80"), ev.get("naive_interval_score_80")
    if score is None or naive is None:
        return None
    if score > naive:
        return (
            f"80 % interval score {score:.4f} is worse than the naive interval's "
            f"({naive:.4f}) on the same days"
        )
    cover = ev["model_coverage_80"]
    if abs(cover - 0.8) > coverage_tolerance:
        return (
            f"80 % interval coverage {cover:.1%} is more than {coverage_tolerance:.0%} "
            "from nominal 80 % (registry.coverage_tolerance): the intervals are not calibrated"
        )
    return None


def version_by_alias(cfg: Config, name: str, alias: str) -> ModelVersion | None:
    try:
        return tracking.client(cfg).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def production_version(cfg: Config, ticker: str) -> ModelVersion | None:
    return version_by_alias(cfg, model_name(cfg, ticker), PRODUCTION)


def is_production_beatable(cfg: Config, ticker: str) -> bool:
    try:
        model = tracking.client(cfg).get_registered_model(model_name(cfg, ticker))
    except MlflowException:
        return False
    return model.tags.get(BEATABLE_TAG) == "true"


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
        mc.create_registered_model(name, description=f"Next-day close forecaster for {ticker}")
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
        if k.startswith(("model_", "naive_", "ewma_", "production_", "dm_", "interval_dm_"))
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
    if is_production_beatable(cfg, ticker):  # a new production model starts with a clean slate
        mc.delete_registered_model_tag(name, BEATABLE_TAG)
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
    decision = decide(
        evaluation,
        cfg.registry.naive_margin,
        cfg.registry.production_tolerance,
        is_production_beatable(cfg, ticker),
        cfg.registry.coverage_tolerance,
    )
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
