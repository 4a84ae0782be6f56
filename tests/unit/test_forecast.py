import datetime as dt

import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.monitoring import forecast

ANSWER = pd.Series(
    {
        "as_of": "2013-03-01",
        "for_date": "2013-03-04",
        "last_close": 806.19,
        "forecast_close": 807.5,
        "forecast_return": 0.0016,
        "model_version": "2",
    }
)


def test_forecast_row_maps_a_served_answer() -> None:
    row = forecast.forecast_row("GOOG", "price_lstm_GOOG", "2", ANSWER)
    created = dt.datetime.fromisoformat(row.pop("created_at"))
    assert created.tzinfo is not None
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert row == {
        "ticker": "GOOG",
        "as_of": "2013-03-01",
        "for_date": "2013-03-04",
        "model_name": "price_lstm_GOOG",
        "model_version": "2",
        "forecast_close": 807.5,
        "naive_close": 806.19,  # naive: tomorrow = today
        "lower_80": None,  # a version without intervals
        "upper_80": None,
        "lower_95": None,
        "upper_95": None,
    }
    banded = ANSWER.copy()
    banded["lower_80"], banded["upper_80"] = 800.0, 815.0
    row = forecast.forecast_row("GOOG", "price_lstm_GOOG", "2", banded)
    assert (row["lower_80"], row["upper_80"], row["lower_95"]) == (800.0, 815.0, None)


def test_write_is_one_row_per_ticker_and_day(cfg: Config) -> None:
    assert forecast.read_forecasts(cfg, "GOOG").empty
    first = forecast.forecast_row("GOOG", "price_lstm_GOOG", "1", ANSWER)
    forecast.write(cfg, first)
    rerun = forecast.forecast_row("GOOG", "price_lstm_GOOG", "2", ANSWER.copy())
    rerun["forecast_close"] = 799.0
    forecast.write(cfg, rerun)
    forecast.write(cfg, {**rerun, "as_of": "2013-03-04", "for_date": "2013-03-05"})
    forecast.write(cfg, forecast.forecast_row("MSFT", "price_lstm_MSFT", "1", ANSWER))
    table = forecast.read_forecasts(cfg, "GOOG")
    assert list(table["as_of"]) == ["2013-03-01", "2013-03-04"]
    assert table["forecast_close"].iloc[0] == 799.0 and table["model_version"].iloc[0] == "2"
    assert table["actual_close"].isna().all()  # filled in by a later monitor step
    assert cfg.layout.forecasts_db().is_file()


def test_run_without_a_production_model_writes_nothing(
    cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    assert forecast.run(cfg, "GOOG", dt.date(2013, 3, 1)) == {"forecast": None}
    assert not cfg.layout.forecasts_db().exists()
    assert "no production model" in caplog.text
