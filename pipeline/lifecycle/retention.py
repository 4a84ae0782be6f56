"""Bounded growth: candidate versions that were never promoted are deleted when old.

Every retrain registers a version; most are never promoted. A version is deleted, with
its logged model's artifacts, when its run day is more than `registry.keep_unpromoted_days`
before the retrain's day, unless it is production or the candidate, or was ever production
(marked on the version itself, so the previous production stays and every rollback target
and every move in the audit trail keeps its version, whatever the experiment is called).
Its MLflow run (metrics, evaluation, plots) stays, for comparisons in the UI; its Optuna
study belongs to the retraining that tuned.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.config import Config
from pipeline.lifecycle import audit, registry

log = logging.getLogger(__name__)


MOVES = ("promote", "rollback")  # audit events that pointed production somewhere


def protected(cfg: Config, name: str, versions: list[Any]) -> set[str]:
    """Versions that stay whatever their age: aliased, or ever production (marked so on
    the version when it moved there, registry.WAS_PRODUCTION; versions moved before the
    mark existed are named by a promote or rollback event of the audit trail, wherever it
    is kept). A gate's refusal is an audit event too, but about a version never promoted:
    the event stays in the trail (with its reason and run) when the version goes."""
    mc = tracking.client(cfg)
    keep = set(mc.get_registered_model(name).aliases.values())
    keep |= {str(v.version) for v in versions if registry.WAS_PRODUCTION in v.tags}
    for event in audit.audit_trail(cfg, name):
        if event.get("action") in MOVES:
            keep |= {event[k] for k in ("from_version", "to_version") if event.get(k)}
    return {str(v) for v in keep}


def local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("", "file") else None


def logged_model_id(version: Any) -> str | None:
    """The version's logged model (MLflow 3), from its model_id or its models:/ source."""
    if getattr(version, "model_id", None):
        return str(version.model_id)
    source = str(getattr(version, "source", "") or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def delete_version(cfg: Config, version: Any, shared: set[str]) -> int:
    """Delete a version and its logged model's artifacts (unless another version still uses
    that logged model: `shared`); returns the bytes freed."""
    mc = tracking.client(cfg)
    freed = 0
    model_id = logged_model_id(version)
    if model_id and model_id not in shared:
        where = local_path(mc.get_logged_model(model_id).artifact_location)
        if where is not None and where.is_dir():
            freed = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
            shutil.rmtree(where)
        mc.delete_logged_model(model_id)
    mc.delete_model_version(version.name, version.version)
    return freed


def tidy(cfg: Config, key: str, day: dt.date) -> dict[str, Any]:
    """Delete `key`'s model's old unpromoted versions (see the module docstring), under the
    registry's lock (no promotion or rollback moves meanwhile), aliases checked again as
    each version goes."""
    keep_days = cfg.registry.keep_unpromoted_days
    if keep_days is None:
        return {"deleted": [], "freed_bytes": 0}
    name = registry.model_name(cfg, key)
    mc = tracking.client(cfg)
    with registry.changing(cfg):
        try:
            versions = mc.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return {"deleted": [], "freed_bytes": 0}
        if not versions:
            return {"deleted": [], "freed_bytes": 0}
        return _tidy(cfg, key, day, name, versions, keep_days)


def _tidy(
    cfg: Config, key: str, day: dt.date, name: str, versions: list[Any], keep_days: int
) -> dict[str, Any]:
    mc = tracking.client(cfg)
    keep = protected(cfg, name, versions)
    doomed = [
        v
        for v in versions
        if str(v.version) not in keep
        and (made := registry.version_day(cfg, v)) is not None
        and (day - made).days > keep_days
    ]
    gone = {str(v.version) for v in doomed}
    # a logged model two versions share (a retried register) stays while one of them does
    shared = {m for v in versions if str(v.version) not in gone if (m := logged_model_id(v))}
    deleted, freed = [], 0
    for v in doomed:
        if str(v.version) in set(mc.get_registered_model(name).aliases.values()):
            continue  # aliased since the list was read: it stays (checked as it goes)
        freed += delete_version(cfg, v, shared)
        deleted.append(str(v.version))
    if deleted:
        log.info("%s: deleted unpromoted versions %s (%d bytes)", name, deleted, freed)
    return {"deleted": sorted(deleted, key=int), "freed_bytes": freed}
