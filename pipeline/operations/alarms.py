"""The universe model's own alarms: judged on the cross-section of its stocks, as one model.

With one model per ticker, a ticker's loss and coverage alarms (monitoring/monitor.py) ask
for its retrain. With the universe's one model they are hundreds of 5 % tests a day, and
chance alone raises about a dozen (pipeline/monitoring/pooled.py), so for the universe
those per-stock alarms (and each stock's input drift) are shown in the day's table but
ask for nothing: the model is
judged once, on the sessions' cross-sectional means (`pooled`), and only that judgement
asks for a refit (under the key `universe`) or sets the universe model's own
`production_beatable` tag, which tells the gate any model passing its other rules may
replace production. The inputs' drift asks for it when a share of the stocks drifted
(`drifted`). The tag is left as it is without a full window of evidence, when
production moved since it was judged, and when it already holds a newer judgement of the
same version (a past day's report rewritten must not undo today's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipeline.config import Config
from pipeline.data.universe import UNIVERSE
from pipeline.lifecycle import registry
from pipeline.monitoring import pooled

# the per-stock alarms the universe judges itself
TESTED = ("beatable", "coverage_drift", "input_drift")
JUDGED_TAG = "production_judged"  # "v<version> <last session>" of the judgement the tag holds


def judged(
    cfg: Config, day: dt.date, monitoring: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The universe model's production version judged on its stocks' sessions up to `day`
    (pooled.judge, with the version) and on their inputs' drift (`drifted`, from each
    stock's `monitoring` summary of the day), or None: a model per ticker, or no
    production."""
    if cfg.model.scope != UNIVERSE:
        return None
    prod = registry.production_version(cfg, UNIVERSE)
    if prod is None:
        return None
    name, version = registry.model_name(cfg, UNIVERSE), str(prod.version)
    per = pooled.sessions(cfg, day, name, version)
    summary = pooled.judge(per, cfg.monitoring.window_days, cfg.registry.coverage_tolerance)
    return {"model": name, "version": version, **summary, **drifted(cfg, monitoring)}


def drifted(cfg: Config, monitoring: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The inputs' drift across the universe: the share of the stocks checked today whose
    inputs drifted (monitoring/drift.py); it asks for a refit from
    `monitoring.universe_drift_share` on (one stock's unusual quarter refits nothing)."""
    checked = [m for m in monitoring.values() if m.get("drift_checked")]
    share = sum(bool(m.get("input_drift")) for m in checked) / len(checked) if checked else 0.0
    return {
        "drift_checked": len(checked),
        "drifted_share": round(share, 4),
        "input_drift": bool(checked) and share >= cfg.monitoring.universe_drift_share,
    }


def reasons(summary: dict[str, Any]) -> list[str]:
    """What the universe's judgement asks a retrain for."""
    asked = ["beatable"] if summary.get("losing") else []
    asked += ["coverage_drift"] if summary.get("coverage_drift") else []
    return asked + (["input_drift"] if summary.get("input_drift") else [])


def flag_universe(cfg: Config, summary: dict[str, Any]) -> None:
    """Set or clear the universe model's own beatable tag from `summary`, under the
    registry's lock: only while the judged version is still production (a promotion
    meanwhile clears the tags for the new one), only on a full window of sessions, and not
    from evidence older than the judgement the tag already holds (a past day's report)."""
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    if summary.get("sessions", 0) < cfg.monitoring.window_days:
        return
    mc, tag, name = tracking.client(cfg), registry.beatable_tag(cfg, UNIVERSE), summary["model"]
    judged_on = f"v{summary['version']} {summary['last_session']}"
    with registry.changing(cfg):
        prod = registry.production_version(cfg, UNIVERSE)
        if prod is None or str(prod.version) != summary["version"]:
            return
        try:
            tags = mc.get_registered_model(name).tags
        except MlflowException:  # gone since: nothing to flag
            return
        before = tags.get(JUDGED_TAG, "")
        if before.split(" ")[0] == judged_on.split(" ")[0] and before > judged_on:
            return  # newer evidence on the same version already spoke
        mc.set_registered_model_tag(name, JUDGED_TAG, judged_on)
        if summary.get("losing") and tags.get(tag) != "true":
            mc.set_registered_model_tag(name, tag, "true")
        elif not summary.get("losing") and tag in tags:
            mc.delete_registered_model_tag(name, tag)
