"""Walk-forward backtest: the blocks, no look-ahead, and a tiny run end to end."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import cli, tracking
from pipeline.config import Config, load_config, throwaway_env
from pipeline.data import ingest
from pipeline.evaluation import backtest, backtest_series
from pipeline.evaluation.backtest_scores import FORECASTERS
from tests.helpers import TINY_BUDGET


@pytest.fixture(scope="module")
def msft(tmp_path_factory: pytest.TempPathFactory) -> backtest_series.Series:
    cfg = load_config(environ=throwaway_env(tmp_path_factory.mktemp("bt")))
    return backtest_series.load_series(cfg, "MSFT", dt.date(2013, 3, 1))


def test_blocks_partition_the_span_every_n_sessions(msft: backtest_series.Series) -> None:
    plan = backtest.Plan(["MSFT"], start=dt.date(2012, 1, 3), refit_every=20)
    blocks = backtest.refit_points(msft, plan)
    dates = msft.feats["Date"]
    assert dates.iloc[blocks[0][0]] == pd.Timestamp("2012-01-03")
    assert all(b - a == 20 for a, b in blocks[:-1]) and 0 < blocks[-1][1] - blocks[-1][0] <= 20
    assert all(blocks[i][1] == blocks[i + 1][0] for i in range(len(blocks) - 1))
    assert dates.iloc[blocks[-1][1] - 1] == pd.Timestamp("2013-02-28")  # the last with a target


def test_a_refit_trains_only_on_rows_whose_targets_are_known(msft: backtest_series.Series) -> None:
    feats = backtest.refit_splits(msft.feats, 2000, 2063)
    assert (feats["split"].iloc[:2000] == "train").all()
    assert (feats["split"].iloc[2000:2063] == "test").all()
    assert (feats["split"].iloc[2063:] == "live").all()
    # the last training row's target is the return into the first forecast day's close
    last_train = feats.iloc[1999]
    assert last_train["Close"] * np.exp(last_train["target"]) == pytest.approx(
        feats["Close"].iloc[2000]
    )


def test_baselines_at_a_refit_do_not_see_later_bars(msft: backtest_series.Series) -> None:
    a, b = 2000, 2063
    base = backtest.baseline_forecasts(msft, a, b)
    later = msft.bar_of[a] + 1
    bars = msft.bars.copy()
    bars.loc[later:, ["Open", "High", "Low", "Close"]] *= 1.7
    shaken = backtest_series.Series("MSFT", bars, msft.feats, msft.bar_of)
    again = backtest.baseline_forecasts(shaken, a, b)
    for name, forecast in base.items():
        assert again[name].scale[0] == pytest.approx(forecast.scale[0]), name
        assert again[name].loc[0] == pytest.approx(forecast.loc[0]), name


def test_a_tiny_backtest_on_a_csv_source_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """From a fresh state (no tuned parameters: it tunes once per ticker), on a landing
    directory: a JSON line, every forecaster scored per ticker and pooled, an MLflow run."""
    landing = tmp_path / "landing"
    landing.mkdir()
    for ticker in ("GOOG", "IBM"):
        (landing / f"{ticker}.csv").write_bytes(ingest.sample_path(ticker).read_bytes())
    env = {
        **throwaway_env(tmp_path),
        **TINY_BUDGET,
        "PIPELINE__SOURCE__KIND": "csv",
        "PIPELINE__SOURCE__CSV_DIR": str(landing),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = ["backtest", "--tickers", "GOOG", "IBM", "--start", "2012-12-03", "--scope", "ticker"]
    assert cli.main([*argv, "--refit-every", "30", "--report-from", "2013-01-15"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sessions"] == {"GOOG": 60, "IBM": 60}  # 2012-12-03 .. 2013-02-28
    assert summary["refits"] == 4 and summary["tickers"] == ["GOOG", "IBM"]
    for scope in (summary["pooled"], *summary["per_ticker"].values()):
        assert set(scope) == set(FORECASTERS)  # model_raw / har_aci: before / with ACI
        assert 0.5 < scope["har"]["coverage_80"] <= 1 and scope["model"]["mase"] > 0
    assert set(summary["dm_pooled"]) == set(FORECASTERS) - {"model"}
    assert all(p["source"] == "tuned at refit" for p in summary["params"].values())
    # the index-scale view: ticker wins with a sign test, ratios to HAR, Kupiec per ticker-year
    wins = summary["ticker_wins"]["har"]
    assert wins["tickers"] == 2 and 0 <= wins["model_ahead"] <= 2
    assert 0 < wins["sign_test_pvalue"] <= 1
    assert summary["ratio_to_har"]["p5"] <= summary["ratio_to_har"]["p95"]
    assert set(summary["kupiec_1pct_rejected_share"]) == {"80", "95"}
    before, final = summary["periods"]["before"], summary["periods"]["final"]
    assert before["last"] < "2013-01-15" <= final["first"]
    assert before["ticker_sessions"] + final["ticker_sessions"] == 120
    cfg: Config = load_config(environ=env)
    run = tracking.client(cfg).get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "pooled_har_interval_score_80" in run.data.metrics
    where = Path(summary["artifacts"])
    assert {p.name for p in where.iterdir()} >= {
        "summary.json",
        "sessions.csv",
        "coverage_by_year.csv",
        "backtest_fan.png",
        "backtest_coverage_by_year.png",
        "backtest_score_over_time.png",
        "backtest_ratio_to_har.png",
        "per_ticker.csv",
    }
    # the adaptive widths moved the model's intervals (and HAR's), not its point forecast
    days = pd.read_csv(where / "sessions.csv")
    for name, raw in (("model", "model_raw"), ("har_aci", "har")):
        assert (days[f"{name}_lower_80"] != days[f"{raw}_lower_80"]).mean() > 0.5
        assert np.allclose(days[f"{name}_forecast_close"], days[f"{raw}_forecast_close"])


def test_a_backtest_that_cannot_run_closes_its_mlflow_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An impossible span (or a Ctrl-C) does not leave the backtest's run RUNNING."""
    from mlflow.entities import ViewType

    env = {**throwaway_env(tmp_path), **TINY_BUDGET}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = ["backtest", "--tickers", "GOOG", "--start", "2014-06-02", "--scope", "ticker"]
    assert cli.main(argv) == 1  # the data end in 2013: "no session to forecast"
    mc = tracking.client(load_config(environ=env))
    ids = [e.experiment_id for e in mc.search_experiments(view_type=ViewType.ALL)]
    runs = mc.search_runs(ids, "tags.kind = 'backtest'")
    assert [r.info.status for r in runs] == ["FAILED"] and runs[0].data.tags["failed"]


def test_adaptive_widths_run_per_ticker_across_refits_without_look_ahead() -> None:
    rng = np.random.default_rng(3)
    n = 300
    frames = []
    for ticker in ("AAA", "BBB"):
        last = np.full(n, 100.0)
        cols = {"ticker": ticker, "as_of": pd.bdate_range("2020-01-01", periods=n)}
        cols |= {"last_close": last, "actual": last * np.exp(rng.normal(0, 0.02, n))}
        for f in ("model", "har"):
            for pct, z in ((80, 1.28), (95, 1.96)):
                cols[f"{f}_lower_{pct}"] = last * np.exp(-z * 0.01)  # far too narrow
                cols[f"{f}_upper_{pct}"] = last * np.exp(z * 0.01)
            cols |= {f"{f}_crps": np.ones(n), f"{f}_qlike": np.ones(n), f"{f}_forecast_close": last}
        frames.append(pd.DataFrame(cols))
    days = pd.concat(frames, ignore_index=True)
    out = backtest.adaptive(days, 0.05, 250)
    assert np.allclose(out["model_raw_lower_80"], days["model_lower_80"])  # as trained, kept
    aaa = out[out["ticker"] == "AAA"]
    assert aaa["model_upper_80"].iloc[0] == pytest.approx(aaa["model_raw_upper_80"].iloc[0])
    half = np.log(aaa["model_upper_80"] / aaa["last_close"])
    raw_half = np.log(aaa["model_raw_upper_80"] / aaa["last_close"])
    assert half.iloc[-1] > 1.5 * raw_half.iloc[-1]  # widened
    inside = (aaa["actual"] >= aaa["model_lower_80"]) & (aaa["actual"] <= aaa["model_upper_80"])
    assert abs(inside.iloc[100:].mean() - 0.8) < 0.08
    # day t's interval does not move when day t's (or a later) outcome does
    shaken = days.copy()
    shaken.loc[150:299, "actual"] *= 1.5  # AAA's last 150 sessions
    again = backtest.adaptive(shaken, 0.05, 250)
    assert np.allclose(again["model_upper_80"][:151], out["model_upper_80"][:151])
    assert np.allclose(again["model_upper_80"][300:], out["model_upper_80"][300:])  # BBB
