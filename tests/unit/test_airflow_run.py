import datetime as dt
import os

from pipeline import airflow_run
from pipeline.config import Config

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
