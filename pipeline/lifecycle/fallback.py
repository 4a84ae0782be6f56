"""The best forecaster serves: when the first LSTM fails the gate, HAR is put to it too.

On a fresh state there is no production model, and a first LSTM the gate refuses would
leave every ticker without a forecast until one passes: a desk needs the day's risk
numbers every day. So, when the gate refuses a version and nothing is in production, the
HAR forecaster (pipeline/forecasting/baseline_model.py: the same pyfunc, inputs and
outputs) is fitted on the same training rows, evaluated on the same test days, registered
as a version of the same model, and put to the same gate:

- it passes: it is promoted like any version;
- it fails too: the one of the two with the lower 80 % interval score on those days
  serves, its version tagged `fallback` with why, so the daily forecast never stops.

A fallback holds production only until a version passes the gate (gate.decide is told
production is beatable), and promotion, audit and rollback treat it like any version.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pipeline import tracking
from pipeline.config import Config
from pipeline.lifecycle import registry
from pipeline.lifecycle.gate import decide
from pipeline.lifecycle.registry import FALLBACK_TAG, FORECASTER_TAG

log = logging.getLogger(__name__)


def serve_best(
    cfg: Config,
    ticker: str,
    day: dt.date,
    features_path: str,
    refused: dict[str, Any],
    lstm_evidence: dict[str, Any],
    evidence_of: Any,
    parent_run_id: str,
) -> dict[str, Any] | None:
    """After the gate refused the LSTM version `refused["version"]` with no production
    model: HAR registered and gated, and the better one promoted (see the module
    docstring). `evidence_of(evaluation)` makes a version's tags as the register step
    does. None when there is production (or the LSTM was promoted): nothing to do.

    A retried step finds the HAR run and version an earlier try made and goes on from
    them. A failure is returned as `{"error": ...}`, not raised: the LSTM's refusal
    stands, its step succeeds, and the next retrain (no production: the next day) tries
    again."""
    if not cfg.registry.serve_fallback or refused["promoted"]:
        return None
    if registry.production_version(cfg, ticker) is not None:
        return None
    run_id = har_run(cfg, ticker, day, parent_run_id)
    try:
        served = _gate_har(
            cfg, ticker, day, features_path, refused, lstm_evidence, evidence_of, run_id
        )
    except Exception as exc:  # any failure: the refusal stands as it was
        log.warning("%s: HAR could not be put to the gate", ticker, exc_info=True)
        tracking.client(cfg).set_terminated(run_id, "FAILED")
        return {"error": f"HAR could not be put to the gate: {type(exc).__name__}: {exc}"[:500]}
    tracking.client(cfg).set_terminated(run_id, "FINISHED")
    tracking.client(cfg).set_tag(parent_run_id, "promotion", f"not promoted; {served['reason']}")
    return served


def har_run(cfg: Config, ticker: str, day: dt.date, parent_run_id: str) -> str:
    """The HAR child run of the pipeline run: an earlier try's, or a new one (tagged with
    the run day, as a pipeline run is: retention and monitoring read it)."""
    mc = tracking.client(cfg)
    exp = mc.get_run(parent_run_id).info.experiment_id
    query = f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.{FORECASTER_TAG} = 'har'"
    found = mc.search_runs([exp], query, max_results=1)
    if found:
        mc.update_run(found[0].info.run_id, status="RUNNING")
        return str(found[0].info.run_id)
    tags = {FORECASTER_TAG: "har", "day": day.isoformat(), "ticker": ticker}
    return tracking.child_run(cfg, parent_run_id, f"har {ticker} {day}", tags)


def _gate_har(
    cfg: Config,
    ticker: str,
    day: dt.date,
    features_path: str,
    refused: dict[str, Any],
    lstm_evidence: dict[str, Any],
    evidence_of: Any,
    run_id: str,
) -> dict[str, Any]:
    from pipeline.evaluation import evaluate_run
    from pipeline.forecasting import baseline_model

    mc = tracking.client(cfg)
    name = registry.model_name(cfg, ticker)
    earlier = [v for v in mc.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    if earlier:  # a retried step: the version an earlier try registered
        uri = str(earlier[0].source)
    else:
        uri = baseline_model.log_har(cfg, ticker, day, features_path, run_id)
    production = registry.production_version(cfg, ticker)
    ev = evaluate_run.run(cfg, ticker, day, features_path, uri, run_id, production)
    if earlier:
        version = str(earlier[0].version)
    else:
        version = registry.register(
            cfg, ticker, uri, run_id, {**evidence_of(ev), FORECASTER_TAG: "har"}
        )
    decision = decide(ev, cfg.registry)
    lstm = str(refused["version"])
    actor = f"pipeline run {refused.get('run_id') or run_id}"
    registry.record_verdict(cfg, name, version, decision, actor, run_id)
    if decision.promote:
        chosen, reason = version, f"HAR: {decision.reason} (LSTM v{lstm} refused)"
    else:
        har_score = ev["model_interval_score_80"]
        lstm_score = lstm_evidence["model_interval_score_80"]
        chosen = version if har_score <= lstm_score else lstm
        who = "HAR" if chosen == version else "LSTM"
        reason = (
            f"fallback: no forecaster passed every rule (LSTM v{lstm}: {refused['reason']}; "
            f"HAR v{version}: {decision.reason}); {who} v{chosen} serves, the lower 80 % "
            f"interval score on the same days ({min(har_score, lstm_score):.4f} vs "
            f"{max(har_score, lstm_score):.4f}), until a version passes the gate"
        )
        mc.set_model_version_tag(name, chosen, FALLBACK_TAG, reason)
    registry.move_production(cfg, ticker, chosen, "promote", reason, actor, run_id=run_id)
    return {
        "version": version,
        "promoted": decision.promote,
        "production_version": chosen,
        "reason": reason,
        "fallback": not decision.promote,
    }
