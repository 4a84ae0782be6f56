"""The DAGs' ids, the asset that joins them, and the reasons a retrain is asked for.

A leaf: the DAG files, the day's report, the retrain's plan, the UI plugin and the
deployment read these names without importing any step.
"""

from __future__ import annotations

DAILY = "price_daily"  # the DAGs' ids, and the asset that joins them
RETRAIN = "price_retrain"
RETRAIN_ASSET = "price_retrain_request"  # emitted by the daily report when a retrain is due
PROMOTION = "model_promotion"  # a person's promotion or rollback, from the UI
DAGS = (DAILY, RETRAIN, PROMOTION)

REASONS = {
    "no_production": "no production model can serve it",
    "beatable": "production lost to naive on significantly many of the monitored days",
    "coverage_drift": "interval coverage drifted",
    "input_drift": "inputs outside the training range",
}


def named(tickers: list[str], shown: int = 12) -> str:
    """'GOOG, IBM', or for many '388 tickers: A, AAL, ... (+376 more)'."""
    if len(tickers) <= shown:
        return ", ".join(tickers)
    return f"{len(tickers)} tickers: {', '.join(tickers[:shown])} (+{len(tickers) - shown} more)"


def why(retrain: dict[str, list[str]]) -> str:
    """Reasons in words, with their tickers: 'inputs outside the training range (GOOG, IBM)'."""
    by_reason: dict[str, list[str]] = {}
    for ticker, reasons in retrain.items():
        for r in reasons:
            by_reason.setdefault(r, []).append(ticker)
    return "; ".join(f"{REASONS.get(r, r)} ({named(t)})" for r, t in by_reason.items())
