"""What a registered version carries: its whole evidence, and a glance at it as tags.

register() (registry.py) keeps the evidence whole as the run's EVIDENCE_ARTIFACT and, as
the version's tags, what a person reads on the registry page at a glance and what the code
reads back (KEPT_TAGS). Every figure is also one of the run's `test_*` metrics, which
MLflow's run comparison lines up side by side.
"""

from __future__ import annotations

from typing import Any

from pipeline import tracking

FORECASTER_TAG = "forecaster"  # lstm | har: what a version forecasts with
EVIDENCE_ARTIFACT = "evaluation/evidence.json"  # a version's full evidence, in its run
# What a version carries as tags besides the glance (glance()): what the code reads back
# (the gate, monitoring, the backtest, the run summary) and where the rest is
KEPT_TAGS = (
    FORECASTER_TAG,
    "model_mase",
    "dm_pvalue",
    "model_interval_score_80",
    "best_baseline",
    "production_version",  # the version it was compared with, on the same days
    "production_mae",
    "first_test_date",
    "last_test_date",
    "tickers_scored",
    "tickers_left_out",
    "per_ticker",
    "params",
    "code_version",
)


def version_tags(evidence: dict[str, Any]) -> dict[str, str]:
    """A version's tags: a glance at why it should be trusted, what the code reads back,
    and where the rest is (every figure: the run's `test_*` metrics, which MLflow's run
    comparison lines up side by side; all of it: EVIDENCE_ARTIFACT)."""
    kept = {k: evidence[k] for k in KEPT_TAGS if evidence.get(k) is not None}
    kept["evidence_file"] = EVIDENCE_ARTIFACT
    return {k: tracking.tag_value(v) for k, v in {**glance(evidence), **kept}.items()}


def glance(evidence: dict[str, Any]) -> dict[str, str]:
    """The model against the best baseline and its coverage, in words."""
    out = {}
    best = evidence.get("best_baseline")
    mine, theirs = (
        evidence.get("model_interval_score_80"),
        evidence.get(f"{best}_interval_score_80"),
    )
    if best and mine is not None and theirs:
        key = "interval_dm_pvalue" if best == "naive" else f"interval_dm_{best}_pvalue"
        p = evidence.get(key)
        said = f", DM p = {float(p):.2g}" if p is not None else ""
        out["vs_best_baseline"] = (
            f"{float(mine) / float(theirs):.3f} x {best.upper()}'s 80 % interval score{said}"
        )
    if (c80 := evidence.get("model_coverage_80")) is not None:
        c95 = evidence.get("model_coverage_95")
        rest = f", 95 %: {100 * float(c95):.1f} %" if c95 is not None else ""
        out["coverage"] = f"80 %: {100 * float(c80):.1f} %{rest}"
    return out


def collect(
    evaluation: dict[str, Any],
    fingerprint: dict[str, Any],
    params: dict[str, Any],
    validation: dict[str, Any],
) -> dict[str, Any]:
    """A version's evidence: why anyone should trust it (register() keeps it whole as the
    run's EVIDENCE_ARTIFACT and a glance at it as the version's tags, version_tags()).

    Pooled figures only, whatever the universe's size: a universe model's per-ticker
    results (`tickers` in the evaluation) are the run's `evaluation/per_ticker.csv`; the
    evidence says how many tickers were scored and where each one's results are."""
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
    per_ticker = {}
    if "tickers" in evaluation:  # a universe model's
        from pipeline.evaluation.evaluate_universe import PER_TICKER_ARTIFACT

        per_ticker = {
            "tickers_scored": len(evaluation["tickers"]),
            "tickers_left_out": len(evaluation.get("tickers_left_out") or {}),
            "per_ticker": PER_TICKER_ARTIFACT,
        }
    return {
        **{k: evaluation[k] for k in keys},
        **per_ticker,
        "first_test_date": evaluation["first_test_date"],
        "last_test_date": evaluation["last_test_date"],
        "data_fingerprint": fingerprint,
        "validation": validation,
        "params": params,
        "code_version": tracking.code_version(),
    }
