"""Human promotion and rollback from the Airflow UI (Trigger DAG w/ config).

Same code path and checks as `python -m pipeline promote/rollback`: the gate
applies unless `force` is ticked, and every move lands in the audit trail with
the triggering user as actor.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from pipeline.layout import TICKER_PATTERN, TICKER_RULE
from pipeline.schedule import PROMOTION


@dag(
    dag_id=PROMOTION,
    schedule=None,
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # as the other DAGs: any run date
    catchup=False,
    tags=["forecasting", "registry"],
    doc_md=__doc__,
    params={
        "action": Param("promote", enum=["promote", "rollback"]),
        "ticker": Param("GOOG", type="string", pattern=TICKER_PATTERN, description=TICKER_RULE),
        "version": Param(
            None,
            type=["null", "string", "integer"],
            description="promote: required; rollback: default is the previous",
        ),
        "reason": Param("", type="string", description="why (kept in the audit trail)"),
        "force": Param(False, type="boolean", description="skip the gate (recorded)"),
    },
)
def model_promotion() -> None:
    @task
    def apply() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipeline.config import load_config
        from pipeline.lifecycle import promotion
        from pipeline.lifecycle.registry import PromotionRefused

        ctx = get_current_context()
        p, run = ctx["params"], ctx["dag_run"]
        actor = f"airflow:{getattr(run, 'triggering_user_name', None) or 'unknown'}"
        version = str(p["version"]) if p["version"] not in (None, "") else None
        reason = p["reason"] or f"{p['action']} from Airflow"
        try:
            if p["action"] == "promote":
                if version is None:
                    raise AirflowFailException("promote needs a version")
                return promotion.promote(
                    load_config(), p["ticker"], version, reason, actor, p["force"]
                )
            return promotion.rollback(
                load_config(), p["ticker"], reason, actor, p["force"], version
            )
        except PromotionRefused as exc:  # a refusal is an answer, not a transient error
            raise AirflowFailException(str(exc)) from exc

    apply()


model_promotion()
