"""MLflow set-up shared by the steps: tracking URI, experiment, the per-run parent run."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.config import PROJECT_ROOT, Config
from pipeline.layout import ensure_sqlite_dir
from pipeline.reachability import ensure_reachable

logging.getLogger("mlflow").setLevel(logging.WARNING)


def client(cfg: Config) -> MlflowClient:
    """The tracking + registry client for `cfg`, also set as MLflow's global URIs."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # checked per event: no calls home
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in task logs
    ensure_sqlite_dir(cfg.tracking_uri)
    ensure_reachable(cfg.tracking_uri, cfg.tracking.connect_timeout_s, cfg.tracking.connect_retries)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return MlflowClient(cfg.tracking_uri)


def experiment_id(cfg: Config, name: str | None = None) -> str:
    """Get or create the experiment; on a local backend its artifacts go under mlruns/."""
    mc = client(cfg)
    name = name or cfg.tracking.experiment
    exp = mc.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if cfg.tracking_uri.startswith("sqlite:"):
        location = (cfg.resolve(cfg.tracking.artifact_root) / name).as_uri()
    try:
        return str(mc.create_experiment(name, artifact_location=location))
    except MlflowException as exc:  # parallel tuning workers race to create it: one wins
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" or not (
            exp := mc.get_experiment_by_name(name)
        ):
            raise
        return str(exp.experiment_id)


def parent_run(cfg: Config, ticker: str, day: dt.date, pipeline_run_id: str) -> str:
    """The one MLflow run for (pipeline run, ticker); a retried task finds the same one.

    Parallel tuning workers may race to create it: each then keeps the oldest and
    deletes its own extra, so all of them log into one run.
    """
    mc, exp = client(cfg), experiment_id(cfg)
    query = _parent_query(ticker, pipeline_run_id)
    found = mc.search_runs([exp], query, order_by=["attributes.start_time ASC"], max_results=1)
    if found:
        return str(found[0].info.run_id)
    tags = {
        "pipeline_run_id": pipeline_run_id,
        "ticker": ticker,
        "day": day.isoformat(),
        "kind": "pipeline",
        "code_version": code_version(),
    }
    mine = str(mc.create_run(exp, run_name=f"{ticker} {day.isoformat()}", tags=tags).info.run_id)
    oldest = mc.search_runs([exp], query, order_by=["attributes.start_time ASC"], max_results=1)[0]
    if oldest.info.run_id != mine:
        mc.delete_run(mine)
    close_interrupted(cfg, ticker, day, pipeline_run_id, str(oldest.info.run_id))
    return str(oldest.info.run_id)


def close_interrupted(
    cfg: Config, ticker: str, day: dt.date, pipeline_run_id: str, by: str
) -> list[str]:
    """Runs of `ticker` for `day` that an earlier, interrupted pipeline run left RUNNING: a
    new run of the same day means that one is over (Airflow replaced it, or it was stopped),
    so they end FAILED, tagged. Other days' runs may be live (a backfill): left alone."""
    mc, exp = client(cfg), experiment_id(cfg)
    query = (
        f"tags.ticker = '{ticker}' and tags.kind = 'pipeline' and tags.day = '{day.isoformat()}'"
        " and attributes.status = 'RUNNING'"
    )
    closed = []
    for run in mc.search_runs([exp], query, max_results=100):
        if run.data.tags.get("pipeline_run_id") != pipeline_run_id:
            tags = {"interrupted": f"closed by {pipeline_run_id}", "superseded_by": by}
            log_batch(mc, run.info.run_id, tags=tags)  # parallel tuning tasks both close it
            mc.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    return closed


def _parent_query(ticker: str, pipeline_run_id: str) -> str:
    return (
        f"tags.pipeline_run_id = '{pipeline_run_id}' and tags.ticker = '{ticker}' "
        "and tags.kind = 'pipeline'"
    )


def close_failed_parent(cfg: Config, ticker: str, pipeline_run_id: str, step: str) -> str | None:
    """A step failed for good: the run's open parent run ends FAILED (tag `failed_step`)
    instead of staying RUNNING forever. Returns its id, or None if none was open."""
    mc = client(cfg)
    exp = mc.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    query = f"{_parent_query(ticker, pipeline_run_id)} and attributes.status = 'RUNNING'"
    for run in mc.search_runs([exp.experiment_id], query, max_results=1):
        mc.set_tag(run.info.run_id, "failed_step", step)
        mc.set_terminated(run.info.run_id, "FAILED")
        return str(run.info.run_id)
    return None


TAG_CHARS = 5000  # a tag's text is cut to this (MLflow: 8,000 for a run's, 100,000 a version's)
METRICS_PER_CALL = 1000  # MLflow's log_batch takes at most this many metrics,
PARAMS_TAGS_PER_CALL = 100  # and this many params and tags


def tag_value(value: Any) -> str:
    """A tag's text: strings as they are, anything else as JSON; cut to TAG_CHARS (a
    universe's list of hundreds of tickers), saying how long it was and its digest."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= TAG_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: TAG_CHARS - 80]}... ({len(text)} characters, sha256 {digest})"


def log_metrics(mc: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Metrics in as few round trips as MLflow allows (METRICS_PER_CALL each)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for at in range(0, len(batch), METRICS_PER_CALL):
        mc.log_batch(run_id, metrics=batch[at : at + METRICS_PER_CALL])


def log_frame(mc: MlflowClient, run_id: str, frame: Any, artifact_file: str) -> None:
    """A table as a Parquet artifact, replacing any earlier one of that name (a retried
    step's); dates as YYYY-MM-DD text. log_table would append to what a failed try left,
    and writes JSON: about 40 MB, 1 s, for a universe's 72,000 test sessions."""
    import tempfile
    from pathlib import Path

    folder, name = os.path.split(artifact_file)
    dates = {c: frame[c].dt.strftime("%Y-%m-%d") for c in frame if frame[c].dtype.kind == "M"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.assign(**dates).to_parquet(path, index=False)
        mc.log_artifact(run_id, str(path), folder or None)


def child_run(cfg: Config, parent_id: str, name: str, tags: dict[str, str]) -> str:
    mc = client(cfg)
    parent = mc.get_run(parent_id)
    run = mc.create_run(
        parent.info.experiment_id, run_name=name, tags={"mlflow.parentRunId": parent_id, **tags}
    )
    return str(run.info.run_id)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@functools.cache  # the code does not change while a process runs
def code_version() -> str:
    """The git commit of the code that ran (plus '-dirty'), or the package version."""
    try:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return _git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import version

        return f"price-pipeline {version('price-pipeline')}"


def log_batch(
    mc: MlflowClient,
    run_id: str,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
) -> None:
    """Params and tags in one round trip to the tracking store (not one per key; one per
    PARAMS_TAGS_PER_CALL of either, MLflow's limit), values cut to TAG_CHARS. Also the
    way to tag a run that parallel tasks share: MLflow's `set_tag` looks for the tag and
    then inserts it, so the second of two first writes at one instant fails on the key,
    where `log_batch` retries."""
    from mlflow.entities import Param, RunTag

    items = [Param(k, tag_value(str(v))) for k, v in (params or {}).items()]
    marks = [RunTag(k, tag_value(str(v))) for k, v in (tags or {}).items()]
    for at in range(0, max(len(items), len(marks), 1), PARAMS_TAGS_PER_CALL):
        end = at + PARAMS_TAGS_PER_CALL
        mc.log_batch(run_id, params=items[at:end], tags=marks[at:end])


def fingerprint(bars: Any, tickers: list[str]) -> dict[str, Any]:
    """What the model was trained on, compactly: enough to tell two data sets apart."""
    digest = hashlib.sha256(bars.to_csv(index=False).encode()).hexdigest()[:16]
    return {
        "tickers": ",".join(tickers),
        "rows": len(bars),
        "first_date": f"{bars['Date'].min():%Y-%m-%d}",
        "last_date": f"{bars['Date'].max():%Y-%m-%d}",
        "sha256": digest,
    }


def log_training_data(mc: MlflowClient, run_id: str, feats: Any, path: str, name: str) -> None:
    """The features a model was trained on as the run's dataset input (MLflow's runs list
    shows it in its Dataset column: name, digest, rows), its source the features file."""
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    data = from_pandas(feats, source=Path(path).resolve().as_uri(), name=name)
    context = InputTag("mlflow.data.context", "training")
    mc.log_inputs(run_id, datasets=[DatasetInput(data._to_mlflow_entity(), tags=[context])])
