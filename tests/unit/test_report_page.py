"""The day's report page: what it gathers from the stored state, and the file it writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import cli
from pipeline.data import store
from pipeline.reporting import page, page_data
from tests.report_support import DAY, report_state


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, object]]:
    return report_state(tmp_path_factory.mktemp("report"))


def test_fans_show_the_last_60_closes_and_the_bands_given_for_them(state) -> None:
    cfg, _ = state
    data = page_data.gather(cfg, DAY)
    assert set(data["tickers"]) == {"AAPL", "GOOG", "IBM", "MSFT"}
    goog = data["tickers"]["GOOG"]["fan"]
    bars = store.read_curated(cfg, "GOOG", until=DAY).tail(60)
    assert goog["dates"] == bars["Date"].dt.strftime("%Y-%m-%d").tolist()
    assert goog["closes"] == pytest.approx(bars["Close"].tolist(), abs=1e-4)
    bands = goog["bands"]
    # the bands given for the window's sessions, and today's, not yet realised, last
    assert bands["for_date"][:-1] == goog["dates"]
    assert bands["for_date"][-1] == "2013-03-04" and bands["actual_close"][-1] is None
    assert all(a is not None for a in bands["actual_close"][:-1])
    assert data["tickers"]["MSFT"]["fan"]["bands"]["for_date"] == []  # no forecasts at all


def test_score_against_har_is_one_for_hars_own_bands_and_worse_for_wider(state) -> None:
    cfg, _ = state
    data = page_data.gather(cfg, DAY)
    assert data["tickers"]["GOOG"]["vs_har"] == pytest.approx(1.0, abs=1e-4)
    assert data["tickers"]["IBM"]["vs_har"] > 1.2  # twice as wide: a worse interval score
    assert data["tickers"]["MSFT"]["vs_har"] is None


def test_health_is_the_cross_section_of_the_realised_bands(state) -> None:
    cfg, _ = state
    health = page_data.gather(cfg, DAY)["health"]
    with sqlite3.connect(cfg.layout.forecasts_db()) as conn:
        table = pd.read_sql_query("SELECT * FROM forecasts WHERE actual_close IS NOT NULL", conn)
    assert 50 <= len(health) <= 60
    for point in health[-5:]:
        same = table[table["for_date"] == point["day"]]
        assert point["tickers"] == len(same) == 3
        assert point["coverage_80"] == pytest.approx(same["inside_80"].mean(), abs=1e-4)
        assert point["coverage_95"] == pytest.approx(same["inside_95"].mean(), abs=1e-4)
        assert np.isfinite(point["model_is"]) and np.isfinite(point["har_is"])


def test_the_page_embeds_strict_json_that_no_text_can_break_out_of(state, tmp_path: Path) -> None:
    cfg, rep = state
    data = page_data.gather(cfg, DAY)
    data["tickers"]["MSFT"]["error"] = "</script><script>alert(1)</script>"
    data["tickers"]["AAPL"]["recent_ratio"] = float("nan")
    html = page.render(data)
    assert "</script><script>alert(1)" not in html and "alert(1)" not in html
    parsed = page.embedded(html)  # strict: NaN became null
    assert html == page.render(data)  # the same data, the same page
    assert parsed["tickers"]["AAPL"]["recent_ratio"] is None
    assert parsed["tickers"]["MSFT"]["error"].startswith("</script>")
    for ticker, row in rep["tickers"].items():  # the day's JSON, as it was
        assert parsed["tickers"][ticker]["forecast"] == row["forecast"]


def test_report_command_writes_the_page_and_refuses_a_day_that_has_not_run(
    state, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, _ = state
    monkeypatch.setenv("PIPELINE__STATE_DIR", str(cfg.layout.root))
    assert cli.main(["report", "2013-03-01"]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written == page.page_path(cfg, DAY) and written.stat().st_size < 5_000_000
    assert cli.main(["report", "2013-02-28"]) == 2
    assert "no report for 2013-02-28" in capsys.readouterr().err
