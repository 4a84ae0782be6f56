"""The real DAG through real Airflow (`airflow dags test`) on a throw-away home and stores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from pipeline import forecast, tracking
from pipeline.config import load_config
from pipeline.ingest import sample_path

from .conftest import store_env

pytestmark = pytest.mark.slow


def _dags_test(day: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), "dags", "test", "price_pipeline", day],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_dag_ingests_validates_builds_features_and_stops_on_bad_data(
    airflow_db: Path, tmp_path: Path
) -> None:
    """The universe model (the default scope) on two tickers: the data half per ticker,
    one pooled model half, a forecast per ticker; then bad data stops the run."""
    landing = tmp_path / "landing"
    landing.mkdir()
    bars = pd.read_csv(sample_path())
    bars.to_csv(landing / "GOOG.csv", index=False)
    pd.read_csv(sample_path("IBM")).to_csv(landing / "IBM.csv", index=False)
    state = tmp_path / "state"
    env = {
        **store_env(tmp_path),  # throw-away MLflow + Optuna stores, tiny model budget
        "PIPELINE__TICKERS": "[GOOG, IBM]",
        "PIPELINE__MODEL__SCOPE": "universe",
        "PIPELINE__TUNE__WORKERS": "2",  # two tuning tasks share one study and its budget
        "PIPELINE__STATE_DIR": str(state),
        "PIPELINE__SOURCE__KIND": "csv",
        "PIPELINE__SOURCE__CSV_DIR": str(landing),
    }

    ok = _dags_test("2013-02-28", env)
    assert ok.returncode == 0, ok.stdout[-3000:]
    curated = pd.read_parquet(state / "curated" / "GOOG.parquet")
    assert curated["Date"].max() == pd.Timestamp("2013-02-28") and len(curated) == 2147
    for key in ("GOOG", "IBM", "universe"):  # each ticker's, and the pooled frame
        assert (state / "features" / key / "2013-02-28" / "features.parquet").is_file()
    assert (state / "reports" / "data_docs" / "index.html").is_file()
    # the model half ran: a registered version, a gate decision, a finished parent run
    cfg = load_config(environ=env)
    mc = tracking.client(cfg)
    version = mc.get_model_version_by_alias("price_lstm_universe", "candidate")
    assert version.tags["gate"] in {"passed", "refused"} and version.tags["gate_reason"]
    run = mc.get_run(version.tags["run_id"])
    assert run.info.status == "FINISHED" and "test_model_mase" in run.data.metrics
    # judged on both tickers' test days together, and on each
    assert {"test_GOOG_model_interval_score_80", "test_IBM_naive_interval_score_80"} <= set(
        run.data.metrics
    )
    assert json.loads(version.tags["data_fingerprint"])["tickers"] == "GOOG,IBM"
    assert run.data.tags["day"] == "2013-02-28"
    assert cfg.tracking_uri.startswith(f"sqlite:///{tmp_path}")
    study = optuna.load_study(study_name="universe-2013-02-28", storage=cfg.optuna_storage)
    assert len(study.trials) == cfg.tune.n_trials == 2  # not 2 per worker
    parents = mc.search_runs([run.info.experiment_id], "tags.kind = 'pipeline'")
    assert [p.info.run_id for p in parents] == [run.info.run_id]
    trials = mc.search_runs([run.info.experiment_id], "tags.kind = 'trial'")
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {run.info.run_id}
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())
    promoted = version.tags["gate"] == "passed"
    for ticker in ("GOOG", "IBM"):  # one model, a forecast per ticker
        forecasts = forecast.read_forecasts(cfg, ticker)
        assert list(forecasts["as_of"]) == (["2013-02-28"] if promoted else [])

    # the next day's file arrives corrupted: High below Low on the new bar
    bars.loc[bars.index[-1], "High"] = 1.0
    bars.to_csv(landing / "GOOG.csv", index=False)
    bad = _dags_test("2013-03-01", env)
    assert bad.returncode != 0
    assert "high_is_highest" in bad.stdout + bad.stderr
    assert pd.read_parquet(state / "curated" / "GOOG.parquet").equals(curated)
    assert (state / "quarantine" / "GOOG" / "2013-03-01" / "report.json").is_file()
    assert not (state / "features" / "GOOG" / "2013-03-01").exists()
    assert not (state / "features" / "universe" / "2013-03-01").exists()
