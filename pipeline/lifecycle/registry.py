"""Registry: one registered model per ticker (`<prefix>_<TICKER>`), aliases not stages.

Every run registers a version with alias `candidate`: its evidence in full as the run's
artifact, a glance at it and what the code reads back as the version's tags.
`production` moves only through promote()/rollback(), which apply the gate
(unless forced) and write an audit event: a run in the `<experiment>_audit`
experiment, so the trail lives in the tracking store next to the models.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.config import Config
from pipeline.layout import check_ticker
from pipeline.lifecycle.audit import identity, record, settle
from pipeline.lifecycle.evidence import EVIDENCE_ARTIFACT, version_tags
from pipeline.lifecycle.evidence import FORECASTER_TAG as FORECASTER_TAG  # a registry tag too
from pipeline.lifecycle.gate import Decision, data_refusal, decide

log = logging.getLogger(__name__)
CANDIDATE, PRODUCTION = "candidate", "production"
EVIDENCE = "evidence"  # complete; incomplete on a version that older code left half tagged
BEATABLE_TAG = "production_beatable"  # set by monitoring when production loses to naive
FALLBACK_TAG = "fallback"  # on a version serving though it failed the gate: why (fallback.py)
# On every version production ever pointed at (set before the alias moves): what retention
# never deletes, found in the registry itself, wherever the audit trail is kept
WAS_PRODUCTION = "was_production"


class PromotionRefused(RuntimeError):
    """A promote/rollback request the gate turned down; the message says why."""


def model_name(cfg: Config, ticker: str) -> str:
    """The registered model that serves a ticker: the universe model (`model.scope:
    universe`) or the ticker's own. The ticker is checked here too, as every registry
    lookup, filter string and alias move goes through this name."""
    from pipeline.data.universe import model_key

    return f"{cfg.registry.model_prefix}_{model_key(cfg, check_ticker(ticker))}"


def version_by_alias(cfg: Config, name: str, alias: str) -> ModelVersion | None:
    try:
        return tracking.client(cfg).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_day(cfg: Config, version: Any) -> dt.date | None:
    """The run day of the pipeline run that registered `version` (None if unknown)."""
    try:
        run_id = version.tags.get("run_id") or version.run_id
        day = tracking.client(cfg).get_run(run_id).data.tags.get("day")
    except (KeyError, MlflowException):
        return None
    return dt.date.fromisoformat(day) if day else None


REGISTRY_LOCK_WAIT_S = 120  # a promotion waits this long for a retention (or another move)


@contextlib.contextmanager
def changing(cfg: Config) -> Iterator[None]:
    """The registry's one lock: promotion, rollback and retention change it one at a time
    (a move racing a retention's deletion could point production at a deleted version).
    A file lock beside a SQLite tracking store (every state on it shares it), else in the
    state; a holder that died lets go with its process."""
    import fcntl
    import time

    uri = cfg.tracking_uri
    where = (
        Path(uri.removeprefix("sqlite:///") + ".registry.lock")
        if uri.startswith("sqlite:///")
        else cfg.layout.root / "registry.lock"
    )
    where.parent.mkdir(parents=True, exist_ok=True)
    with where.open("a") as handle:
        deadline = time.monotonic() + REGISTRY_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PromotionRefused(
                        f"the registry stayed busy {REGISTRY_LOCK_WAIT_S} s (another move or "
                        f"a retention holds {where}); try again"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def production_version(cfg: Config, ticker: str) -> ModelVersion | None:
    return version_by_alias(cfg, model_name(cfg, ticker), PRODUCTION)


def beatable_tag(cfg: Config, ticker: str) -> str:
    """The tag monitoring sets when production loses on `ticker`: one per ticker on a model
    that serves several (each ticker's monitor sets and clears only its own)."""
    from pipeline.data.universe import UNIVERSE, model_key

    key = model_key(cfg, ticker)
    return BEATABLE_TAG if key == ticker or ticker == UNIVERSE else f"{BEATABLE_TAG}.{ticker}"


def beatable_tags(cfg: Config, ticker: str) -> list[str]:
    """The set beatable tags of the model that serves `ticker` (any of its tickers')."""
    try:
        model = tracking.client(cfg).get_registered_model(model_name(cfg, ticker))
    except MlflowException:
        return []
    return [k for k, v in model.tags.items() if k.startswith(BEATABLE_TAG) and v == "true"]


def production_beatable(cfg: Config, ticker: str, prod: ModelVersion | None) -> bool | str:
    """What the gate is told of production `prod` (gate.decide): why any version that
    passes the other rules may replace it (a fallback never earned its place), or whether
    monitoring says it keeps losing."""
    if prod is not None and prod.tags.get(FALLBACK_TAG):
        return "is a fallback that did not pass the gate"
    return is_production_beatable(cfg, ticker)


def is_production_beatable(cfg: Config, ticker: str) -> bool:
    """Monitoring says production keeps losing on `ticker`; asked for the universe model
    itself, the day's report says its loss stands across the stocks (the universe's own
    tag: pipeline/operations/alarms.py), not one stock's chance streak."""
    return beatable_tag(cfg, ticker) in beatable_tags(cfg, ticker)


def register(
    cfg: Config, ticker: str, model_uri: str, run_id: str, evidence: dict[str, Any]
) -> str:
    """New version from the run's model, alias `candidate`, evidence as version tags.

    The version is created with all its tags in one request: it is never seen half
    tagged, and each request to the stack's authenticating server has a cost. A version
    of this model that older code left `incomplete` (it tagged after creating, and its
    try was interrupted) is finished instead of registering a second one."""
    import mlflow

    mc = tracking.client(cfg)
    name = model_name(cfg, ticker)
    try:
        mc.get_registered_model(name)
    except MlflowException:
        mc.create_registered_model(name, description=f"Next-day close forecaster: {ticker}")
    # the full evidence as the run's artifact; the version keeps what a person reads
    mc.log_dict(run_id, evidence, EVIDENCE_ARTIFACT)
    tags = {**version_tags(evidence), "run_id": run_id}  # the glance first on the page
    tags[EVIDENCE] = "complete"  # last: set one by one, it is the seal
    left = [
        v
        for v in mc.search_model_versions(f"name = '{name}'")
        if v.tags.get("run_id") == run_id
        and v.tags.get(EVIDENCE) == "incomplete"
        and v.source == model_uri  # not an earlier model of a cleared, re-run DAG run
    ]
    if left:
        found = max(left, key=lambda v: int(v.version))
        version = str(found.version)
        for key, value in tags.items():
            if found.tags.get(key) != value:
                mc.set_model_version_tag(name, version, key, value)
    else:
        version = str(mlflow.register_model(model_uri, name, tags=tags).version)
    mc.set_registered_model_alias(name, CANDIDATE, version)
    return version


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
    """Point `production` at `version` and write the audit event (returned), under the
    registry's lock; a version gone meanwhile (a retention) is refused, not a traceback."""
    with changing(cfg):
        name = model_name(cfg, ticker)
        try:
            target = tracking.client(cfg).get_model_version(name, version)
        except MlflowException:
            raise PromotionRefused(f"{name} has no version {version} (any more)") from None
        before = production_version(cfg, ticker)
        mc = tracking.client(cfg)
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
        # the record first, pending, and closed once the alias moved: interrupted in between,
        # the trail says what was attempted and the next move settles it; production never
        # moves without a record
        settle(cfg, name, before)
        audit_run = record(cfg, event, pending=True)
        for ever in (before, target):  # rollback targets, for good
            if ever is not None and WAS_PRODUCTION not in ever.tags:
                mc.set_model_version_tag(name, str(ever.version), WAS_PRODUCTION, event_time())
        mc.set_registered_model_alias(name, PRODUCTION, version)
        mc.set_model_version_tag(name, version, "promoted_reason", reason)
        for tag in beatable_tags(cfg, ticker):  # a new production model starts with a clean slate
            mc.delete_registered_model_tag(name, tag)
        mc.set_terminated(audit_run)
        return event


def event_time() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def record_verdict(
    cfg: Config, name: str, version: str, decision: Decision, actor: str, run_id: str
) -> None:
    """The gate's verdict on `name` v`version`, kept on it (tags `gate`, `gate_reason`), and
    a refusal in the audit trail as every move is."""
    mc = tracking.client(cfg)
    mc.set_model_version_tag(name, version, "gate", "passed" if decision.promote else "refused")
    mc.set_model_version_tag(name, version, "gate_reason", decision.reason)
    if not decision.promote:
        event = {"action": "refused", "model": name, "to_version": version}
        record(cfg, {**event, "reason": decision.reason, "actor": actor, "run_id": run_id})


def promote_if_better(
    cfg: Config, ticker: str, version: str, evaluation: dict[str, Any], run_id: str
) -> dict[str, Any]:
    """The DAG's gate: move `production` to `version` only if the evidence earns it, and
    never to a version that saw less data than production (a backfill or a replay of an
    old day may register and evaluate; it does not move newer production back). The
    model's name and production version are looked up once here; the move reads
    production again under the registry's lock, where it must be current."""
    name, prod = model_name(cfg, ticker), production_version(cfg, ticker)
    stale = data_refusal(evaluation, prod.tags, str(prod.version)) if prod else None
    decision = (
        Decision(False, stale)
        if stale
        else decide(evaluation, cfg.registry, production_beatable(cfg, ticker, prod))
    )
    actor = f"pipeline run {run_id}"
    record_verdict(cfg, name, version, decision, actor, run_id)
    tracking.client(cfg).set_tag(
        run_id,
        "promotion",
        ("promoted: " if decision.promote else "not promoted: ") + decision.reason,
    )
    serving = str(prod.version) if prod else None
    if decision.promote:
        move_production(cfg, ticker, version, "promote", decision.reason, actor, run_id=run_id)
        serving = version
    return {
        "model_name": name,
        "version": version,
        "promoted": decision.promote,
        "reason": decision.reason,
        "production_version": serving,
    }
