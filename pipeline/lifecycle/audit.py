"""The audit trail of `production`: every move (promote, rollback) and every gate refusal,
as a run in the `<experiment>_audit` experiment, so the trail lives in the tracking store
next to the models (the registered model names that experiment, AUDIT_TAG, so its trail
is still found after `tracking.experiment` is renamed); with who asked (--actor) and who
really ran it (account, host, DAG run).

A move's event is written first, pending, and closed once the alias moved: production
never moves without a record, and an interrupted move is settled by the next one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import logging
import os
import pwd
import socket
from typing import Any

from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.config import Config

log = logging.getLogger(__name__)
AUDIT_TAG = "audit_experiment"  # on a registered model: the experiment its trail is kept in


def record(cfg: Config, event: dict[str, Any], pending: bool = False) -> str:
    """Append one audit event (a run in the audit experiment, tags only); its run id.

    A `pending` event stays RUNNING until `settle` or its writer closes it: the trail tells
    an attempted move from a done one."""
    mc = tracking.client(cfg)
    where = f"{cfg.tracking.experiment}_audit"
    exp = tracking.experiment_id(cfg, where)
    with contextlib.suppress(MlflowException):  # the model names where its trail is kept
        mc.set_registered_model_tag(event["model"], AUDIT_TAG, where)
    event = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **event}
    run = mc.create_run(
        exp,
        run_name=f"{event['action']} {event['model']}",
        tags={k: tracking.tag_value(v) for k, v in event.items() if v is not None},
    )
    if not pending:
        mc.set_terminated(run.info.run_id)
    log.info("audit: %s", event)
    return str(run.info.run_id)


# an audit run's status, as the trail says it: a move done, attempted, or abandoned
AUDIT_STATES = {"FINISHED": "done", "RUNNING": "pending", "FAILED": "not applied"}
AUDIT_KEYS = (
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


def _audit_runs(cfg: Config, name: str) -> list[Any]:
    """Every audit run of registered model `name`, oldest first, all pages of them."""
    mc = tracking.client(cfg)
    places = {f"{cfg.tracking.experiment}_audit"}
    with contextlib.suppress(MlflowException):  # no model yet: no trail elsewhere either
        places.add(mc.get_registered_model(name).tags.get(AUDIT_TAG, ""))
    found = [e for p in sorted(places) if p and (e := mc.get_experiment_by_name(p))]
    if not found:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = mc.search_runs(
            [e.experiment_id for e in found],
            f"tags.model = '{name}'",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def audit_trail(cfg: Config, name: str) -> list[dict[str, str]]:
    """The moves and refusals of registered model `name` (registry.model_name), oldest first."""
    return [
        {
            **{k: r.data.tags[k] for k in AUDIT_KEYS if k in r.data.tags},
            "state": AUDIT_STATES.get(r.info.status, r.info.status.lower()),
        }
        for r in _audit_runs(cfg, name)
    ]


def settle(cfg: Config, name: str, prod: Any) -> None:
    """Close the moves an interrupted writer left pending on model `name`: done if `prod`
    (its production version now, or None) is where the event says (the alias moved, the
    close did not), otherwise not applied."""
    mc = tracking.client(cfg)
    for run in _audit_runs(cfg, name):
        if run.info.status == "RUNNING":
            moved = prod is not None and run.data.tags.get("to_version") == str(prod.version)
            mc.set_terminated(run.info.run_id, "FINISHED" if moved else "FAILED")
            log.warning(
                "audit: settled an interrupted %s as %s",
                run.info.run_name,
                "done" if moved else "not applied",
            )


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
