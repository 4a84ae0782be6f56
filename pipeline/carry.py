"""The hand-off between steps: one small, JSON-able dict that grows step by step.

Each step returns only its own keys (one TypedDict below per step, in run
order) and the runner merges them into the carry. Values are paths, ids,
versions and small summaries, never frames: the carry travels through XCom.
This module imports only `typing`, so parsing a DAG file stays cheap.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Started(TypedDict, total=False):
    ticker: str
    day: str  # the run day, ISO YYYY-MM-DD: the only type the run day has in a carry
    pipeline_run_id: str  # Airflow's run_id, or cli-<hex> for an in-process run
    retrain: dict[
        str, Any
    ]  # the retrain DAG's plan (pipeline/operations/retrain.py): why, tune|refit


class Ingested(TypedDict, total=False):
    raw_path: str


class Validated(TypedDict, total=False):
    curated_path: str
    rows: int
    revisions: int
    checked: int
    first_date: str
    last_date: str
    data_docs: str | None
    quarantined_rows: int  # older rows left out, kept in quarantine/<ticker>/rows.csv
    quarantined: list[dict[str, str]]  # the first 20 of them: Date, rule
    missing_sessions: dict[str, Any]  # {count, days}: sessions without a bar in its span
    validation: dict[str, Any]  # the evidence a trained model and its version carry


class Monitored(TypedDict, total=False):
    monitoring: dict[str, Any]


class Featured(TypedDict, total=False):
    features_path: str
    splits: dict[str, Any]


class Tuned(TypedDict, total=False):
    parent_run_id: str
    worker: int
    trials_run: int


class Selected(TypedDict, total=False):
    study: str
    best_params: dict[str, Any]
    best_epoch: int
    best_val_loss: float
    trials: int


class Trained(TypedDict, total=False):
    model_uri: str
    params: dict[str, Any]
    fingerprint: dict[str, Any]


class Evaluated(TypedDict, total=False):
    evaluation: dict[str, Any]


class Registered(TypedDict, total=False):
    version: str


class Promoted(TypedDict, total=False):
    promotion: dict[str, Any]  # the `python -m pipeline run` summary line


class Tidied(TypedDict, total=False):
    tidied: dict[
        str, Any
    ]  # unpromoted versions deleted, bytes freed (pipeline/lifecycle/retention.py)


class Forecasted(TypedDict, total=False):
    forecast: dict[str, Any] | None


class Carry(
    Started,
    Ingested,
    Validated,
    Monitored,
    Featured,
    Tuned,
    Selected,
    Trained,
    Evaluated,
    Registered,
    Promoted,
    Forecasted,
    total=False,
):
    """Everything a ticker's run has produced so far."""
