"""The two DAGs through real Airflow (`airflow dags test`, as `make run` drives them) on a
throw-away home and stores: a fresh state retrains first, a quiet day retrains nothing,
one ticker's bad day leaves the others' forecasts written, and drifted inputs ask for
exactly one retrain, which refits."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from pipeline import schedule, tracking
from pipeline.config import load_config
from pipeline.data.ingest import sample_path
from pipeline.evaluation.evaluate_universe import PER_TICKER_ARTIFACT
from pipeline.monitoring import forecast
from pipeline.orchestration import journal
from pipeline.reporting.page import embedded

from .conftest import store_env

pytestmark = pytest.mark.slow

PERMISSIVE_GATE = {  # the gate's rules have their own tests; here every candidate passes
    "PIPELINE__REGISTRY__POINT_TOLERANCE": "0.99",
    "PIPELINE__REGISTRY__SIGNIFICANCE": "1e-9",
    "PIPELINE__REGISTRY__INTERVAL_TOLERANCE": "0.99",
    "PIPELINE__REGISTRY__COVERAGE_TOLERANCE": "0.79",
    "PIPELINE__REGISTRY__TICKER_TOLERANCE": "0.99",
    "PIPELINE__REGISTRY__PRODUCTION_TOLERANCE": "0.99",
}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def _asset_events(airflow_home: Path) -> list[dict[str, object]]:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute("SELECT extra FROM asset_event").fetchall()
    return [json.loads(r[0]) for r in rows]


def test_a_fresh_state_a_quiet_day_a_bad_ticker_and_drift(airflow_db: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    for ticker in ("GOOG", "IBM", "MSFT"):
        (landing / f"{ticker}.csv").write_bytes(sample_path(ticker).read_bytes())
    state = tmp_path / "state"
    env = {
        **store_env(tmp_path),  # throw-away MLflow + Optuna stores, tiny model budget
        **PERMISSIVE_GATE,
        "PIPELINE__TICKERS": "[GOOG, IBM, MSFT]",
        "PIPELINE__MODEL__SCOPE": "universe",
        "PIPELINE__TUNE__WORKERS": "2",  # two tuning tasks share one study and its budget
        "PIPELINE__STATE_DIR": str(state),
        "PIPELINE__SOURCE__KIND": "csv",
        "PIPELINE__SOURCE__CSV_DIR": str(landing),
    }
    before = len(_asset_events(airflow_db))
    cfg = load_config(environ=env)
    mc = tracking.client(cfg)

    # day 1, replayed, on a fresh state: nothing can forecast, so the retrain runs first
    first = _cli(env, "replay", "--from", "2013-01-02", "--to", "2013-01-02")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["sessions"], summary["forecasts"]) == (1, 3)
    assert [(r["when"], r["mode"]) for r in summary["retrains"]] == [("before the day", "tune")]
    assert summary["retrains"][0]["reasons"]["IBM"] == ["no_production"]
    assert summary["state_bytes_after"] > summary["state_bytes_before"]
    version = mc.get_model_version_by_alias("price_lstm_universe", "production")
    run = mc.get_run(version.tags["run_id"])
    assert run.info.status == "FINISHED" and "test_model_mase" in run.data.metrics
    # the registry page's glance, the data the model saw as the run's dataset input
    assert len(version.tags) <= 24 and {"vs_best_baseline", "coverage", "gate"} <= set(version.tags)
    seen = run.inputs.dataset_inputs
    assert [d.dataset.name for d in seen] == ["features 2013-01-02"]
    assert [t.value for t in seen[0].tags] == ["training"]
    per_ticker = pd.read_csv(mc.download_artifacts(run.info.run_id, PER_TICKER_ARTIFACT))
    assert set(per_ticker["ticker"]) == {"GOOG", "IBM", "MSFT"}  # any number of tickers
    assert {"model_interval_score_80", "naive_interval_score_80"} <= set(per_ticker.columns)
    assert run.data.tags["retrain_mode"] == "tune"
    assert json.loads(run.data.tags["retrain_reasons"])["IBM"] == ["no_production"]
    study = optuna.load_study(study_name="universe-2013-01-02", storage=cfg.optuna_storage)
    assert len(study.trials) == cfg.tune.n_trials == 2  # not 2 per worker
    trials = mc.search_runs([run.info.experiment_id], "tags.kind = 'trial'")
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {run.info.run_id}
    for ticker in ("GOOG", "IBM", "MSFT"):  # one model, a forecast per ticker
        assert list(forecast.read_forecasts(cfg, ticker)["as_of"]) == ["2013-01-02"]
    # and the day itself was quiet: no retrain asked for after it
    assert len(_asset_events(airflow_db)) == before
    assert (
        json.loads((state / "reports" / "daily" / "2013-01-02.json").read_text())["retrain"] == {}
    )

    # day 2, two months on: MSFT's new bar arrives broken (High below Low), and the
    # others' inputs of the last 20 sessions (after the model was trained) read as drifted
    # (a threshold nothing stays under)
    curated = pd.read_parquet(state / "curated" / "MSFT.parquet")
    bars = pd.read_csv(landing / "MSFT.csv")
    bars.loc[bars.index[-1], "High"] = 1.0
    bars.to_csv(landing / "MSFT.csv", index=False)
    drifting = {
        **env,
        "PIPELINE__MONITORING__DRIFT_OUTSIDE": "1e-9",
        "PIPELINE__MONITORING__DRIFT_WINDOW": "20",
    }
    second = _cli(drifting, "daily", "2013-03-01")  # what `make run` runs
    assert second.returncode == 1, second.stdout[-3000:]  # a ticker failed; the rest did not
    out = second.stdout
    assert "start  monitor    chunk 1/1 (2 tickers)" in out  # progress: MSFT is out
    assert "done   train      universe" in out
    assert "ticker   last close   forecast" in out  # the table
    assert "quarantined (validation: high_is_highest)" in out
    # the universe model's inputs drifted on both stocks checked (all of them): one reason
    assert "after the day: inputs outside the training range (universe) (refit)" in out
    for ticker in ("GOOG", "IBM"):
        assert forecast.read_forecasts(cfg, ticker)["as_of"].iloc[-1] == "2013-03-01"
    assert forecast.read_forecasts(cfg, "MSFT")["as_of"].iloc[-1] == "2013-01-02"
    assert pd.read_parquet(state / "curated" / "MSFT.parquet").equals(curated)
    report = json.loads((state / "reports" / "daily" / "2013-03-01.json").read_text())
    assert report["tickers"]["MSFT"]["status"] == "quarantined"
    page = state / "reports" / "daily" / "2013-03-01.html"  # the day's page, written and named
    assert f"report page: {page}" in out
    assert embedded(page.read_text())["tickers"]["MSFT"]["status"] == "quarantined"
    assert "high_is_highest" in report["tickers"]["MSFT"]["error"]
    # exactly one request, for the whole day, with its reasons; one retrain, a refit
    events = _asset_events(airflow_db)[before:]
    assert events == [{"day": "2013-03-01", "reasons": {"universe": ["input_drift"]}}]
    assert report["tickers"]["GOOG"]["alerts"] == ["input_drift"]  # each stock's, shown
    assert report["universe"]["drifted_share"] == 1.0
    retrains = journal.read(cfg, schedule.RETRAIN, pd.Timestamp("2013-03-01").date())
    assert [e["ticker"] for e in retrains if e["task"] == "promote" and e["event"] == "end"] == [
        "universe"
    ]
    found = mc.search_model_versions("name = 'price_lstm_universe'")
    newest = max(found, key=lambda v: int(v.version))
    refit = mc.get_run(newest.tags["run_id"])
    assert refit.data.tags["retrain_mode"] == "refit" and refit.data.tags["day"] == "2013-03-01"
    assert "universe-2013-03-01" not in optuna.get_all_study_names(cfg.optuna_storage)
