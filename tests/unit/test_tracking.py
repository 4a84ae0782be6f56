"""MLflow set-up on a real, throw-away SQLite store."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline import tracking
from pipeline.config import Config, throwaway_config

DAY = dt.date(2013, 3, 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return throwaway_config(tmp_path_factory.mktemp("tracking"))


def _bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Date": pd.to_datetime(["2013-02-28", "2013-03-01"]),
            "Open": [801.1, 797.8],
            "High": [806.99, 807.14],
            "Low": [801.03, 796.15],
            "Close": [801.2, 806.19],
            "Volume": [2265800.0, 2175400.0],
        }
    )


def test_fingerprint_tells_data_sets_apart() -> None:
    bars = _bars()
    fp = tracking.fingerprint(bars, ["GOOG"])
    assert fp["tickers"] == "GOOG" and fp["rows"] == 2
    assert (fp["first_date"], fp["last_date"]) == ("2013-02-28", "2013-03-01")
    assert len(fp["sha256"]) == 16
    assert tracking.fingerprint(bars.copy(), ["GOOG"]) == fp  # a pure function of the data
    revised = bars.assign(Close=[801.2, 806.2])
    assert tracking.fingerprint(revised, ["GOOG"])["sha256"] != fp["sha256"]


def test_client_creates_the_sqlite_directory(tmp_path: Path) -> None:
    cfg = throwaway_config(tmp_path)
    db = Path(cfg.tracking_uri.removeprefix("sqlite:///"))
    assert not db.parent.exists()
    assert tracking.client(cfg).tracking_uri == cfg.tracking_uri
    assert db.parent.is_dir()


def test_experiment_is_created_once_with_artifacts_under_the_root(store: Config) -> None:
    exp_id = tracking.experiment_id(store, "exp_test")
    assert tracking.experiment_id(store, "exp_test") == exp_id
    exp = tracking.client(store).get_experiment(exp_id)
    root = store.resolve(store.tracking.artifact_root)
    assert exp.artifact_location == (root / "exp_test").as_uri()


def test_experiment_created_by_a_parallel_worker_meanwhile_is_used(
    store: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tuning workers start at once: both look, find nothing, both create; one loses."""
    from mlflow import MlflowClient

    exp_id = tracking.experiment_id(store, "exp_race")  # the other worker's, already there
    real = MlflowClient.get_experiment_by_name
    looked: list[str] = []

    def first_look_misses(self: MlflowClient, name: str) -> object:
        looked.append(name)
        return None if len(looked) == 1 else real(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", first_look_misses)
    assert tracking.experiment_id(store, "exp_race") == exp_id
    assert looked == ["exp_race", "exp_race"]


def test_parent_run_is_one_per_pipeline_run_and_ticker(store: Config) -> None:
    first = tracking.parent_run(store, "GOOG", DAY, "manual__1")
    assert tracking.parent_run(store, "GOOG", DAY, "manual__1") == first  # a retry finds it
    assert tracking.parent_run(store, "GOOG", DAY, "manual__2") != first
    assert tracking.parent_run(store, "MSFT", DAY, "manual__1") != first
    tags = tracking.client(store).get_run(first).data.tags
    assert tags["pipeline_run_id"] == "manual__1" and tags["kind"] == "pipeline"
    assert tags["ticker"] == "GOOG" and tags["day"] == "2013-03-01"
    assert tags["code_version"] == tracking.code_version()


def test_child_run_hangs_under_its_parent(store: Config) -> None:
    parent = tracking.parent_run(store, "GOOG", DAY, "manual__child")
    child = tracking.child_run(store, parent, "trial-0", {"kind": "trial"})
    run = tracking.client(store).get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["kind"] == "trial" and run.info.run_name == "trial-0"
    assert run.info.experiment_id == tracking.client(store).get_run(parent).info.experiment_id


def test_log_batch_writes_params_and_tags_as_text(store: Config) -> None:
    run_id = tracking.parent_run(store, "GOOG", DAY, "manual__batch")
    mc = tracking.client(store)
    tracking.log_batch(mc, run_id, params={"units": 4, "dropout": 0.1}, tags={"data.rows": 2})
    data = mc.get_run(run_id).data
    assert data.params == {"units": "4", "dropout": "0.1"}
    assert data.tags["data.rows"] == "2"


def test_code_version_names_the_code() -> None:
    version = tracking.code_version()
    assert version and version == tracking.code_version()
    assert version.startswith("price-pipeline ") or len(version.removesuffix("-dirty")) >= 7
