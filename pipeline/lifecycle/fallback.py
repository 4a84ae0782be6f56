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
from typing import Any

from pipeline.config import Config
from pipeline.lifecycle import registry, tracking
from pipeline.lifecycle.gate import decide
from pipeline.lifecycle.registry import FALLBACK_TAG, FORECASTER_TAG


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
    does. None when there is production (or the LSTM was promoted): nothing to do."""
    if not cfg.registry.serve_fallback or refused["promoted"]:
        return None
    if registry.production_version(cfg, ticker) is not None:
        return None
    from pipeline.evaluation import evaluate
    from pipeline.forecasting import baseline_model

    run_id = tracking.child_run(cfg, parent_run_id, f"har {ticker} {day}", {FORECASTER_TAG: "har"})
    uri = baseline_model.log_har(cfg, ticker, day, features_path, run_id)
    ev = evaluate.run(cfg, ticker, day, features_path, uri, run_id)
    tags = {**evidence_of(ev), FORECASTER_TAG: "har"}
    version = registry.register(cfg, ticker, uri, run_id, tags)
    decision = decide(ev, cfg.registry)
    name = registry.model_name(cfg, ticker)
    mc = tracking.client(cfg)
    mc.set_model_version_tag(name, version, "gate", "passed" if decision.promote else "refused")
    mc.set_model_version_tag(name, version, "gate_reason", decision.reason)
    lstm = str(refused["version"])
    if decision.promote:
        chosen, reason = version, f"HAR: {decision.reason} (LSTM v{lstm} refused)"
    else:
        har_score, lstm_score = (
            ev["model_interval_score_80"],
            lstm_evidence["model_interval_score_80"],
        )
        chosen = version if har_score <= lstm_score else lstm
        who = "HAR" if chosen == version else "LSTM"
        reason = (
            f"fallback: no forecaster passed every rule (LSTM v{lstm}: {refused['reason']}; "
            f"HAR v{version}: {decision.reason}); {who} v{chosen} serves, the lower 80 % "
            f"interval score on the same days ({min(har_score, lstm_score):.4f} vs "
            f"{max(har_score, lstm_score):.4f}), until a version passes the gate"
        )
        mc.set_model_version_tag(name, chosen, FALLBACK_TAG, reason)
    registry.move_production(
        cfg,
        ticker,
        chosen,
        "promote",
        reason,
        f"pipeline run {parent_run_id}",
        run_id=parent_run_id,
    )
    mc.set_terminated(run_id, "FINISHED")
    return {
        "version": version,
        "promoted": decision.promote,
        "production_version": chosen,
        "reason": reason,
        "fallback": not decision.promote,
    }
