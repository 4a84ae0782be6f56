import datetime as dt
import os
from pathlib import Path

from pipeline.config import Config
from pipeline.orchestration import airflow_run
from tests.conftest import FIRST_RUNS

DAY = dt.date(2013, 3, 1)


def test_outputs_say_where_to_look(make_cfg) -> None:
    cfg: Config = make_cfg(tickers="[GOOG, MSFT]")
    out = airflow_run.outputs(cfg, DAY)
    assert out["models"] == {
        f"price_lstm_{t}": {
            "candidate": None,
            "gate": None,
            "production": None,
            "model_mase": None,
            "dm_pvalue": None,
        }
        for t in ("GOOG", "MSFT")
    }
    assert out["mlflow_tracking_uri"] == cfg.tracking_uri
    assert out["optuna_storage"] == cfg.optuna_storage
    assert out["forecasts"] == str(cfg.state / "forecasts.sqlite")
    assert out["data_docs"] == str(cfg.state / "reports" / "data_docs" / "index.html")
    assert out["raw_pulls"] == [
        str(cfg.state / "raw" / t / "2013-03-01.csv") for t in ("GOOG", "MSFT")
    ]
    assert out["curated"] == out["quarantine"] == out["features"] == []  # nothing ran yet
    assert out["airflow_home"] == os.environ.get("AIRFLOW_HOME", "")

    at = cfg.layout
    at.features_dir("GOOG", DAY).mkdir(parents=True)
    at.quarantine_dir("GOOG", dt.date(2013, 2, 28)).mkdir(parents=True)  # another day's
    at.curated_path("GOOG").parent.mkdir(parents=True)
    at.curated_path("GOOG").touch()
    out = airflow_run.outputs(cfg, DAY)
    assert out["features"] == [str(at.features_dir("GOOG", DAY))]
    assert out["quarantine"] == []
    assert out["curated"] == [str(at.curated_path("GOOG"))]


def test_two_first_time_runs_migrate_airflows_db_once(airflow_db: Path) -> None:
    assert len(FIRST_RUNS) == 2  # raced in the session's fixture, both to the end
    assert [r.returncode for r in FIRST_RUNS] == [0, 0], [r.stdout[-2000:] for r in FIRST_RUNS]
    said = [r.stdout.count("creating Airflow's metadata DB") for r in FIRST_RUNS]
    assert sorted(said) == [0, 1]  # one migrated; the other waited and found it done
    assert (airflow_db / ".migrated").exists() and not (airflow_db / ".migrating").exists()
    assert "Traceback" not in "".join(r.stdout for r in FIRST_RUNS)
