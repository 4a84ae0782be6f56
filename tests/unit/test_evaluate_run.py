"""One helper logs every evaluation run (the single-ticker, the pooled and the
backtest's): past MLflow's 1,000 metrics a call, with its figures, tables and files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline import tracking
from pipeline.config import throwaway_config
from pipeline.evaluation.evaluate_run import log_evaluation
from pipeline.evaluation.plots import pyplot


def test_an_evaluation_of_any_size_is_logged_whole(tmp_path: Path) -> None:
    cfg = throwaway_config(tmp_path)
    mc = tracking.client(cfg)
    run_id = mc.create_run(tracking.experiment_id(cfg)).info.run_id
    metrics: dict[str, object] = {f"test_m{i}": i / 7 for i in range(2345)}
    metrics |= {"test_days": 60, "best_baseline": "har", "nan": math.nan, "flag": True}
    fig = pyplot().figure()
    frame = pd.DataFrame({"as_of": pd.to_datetime(["2013-01-02", "2013-01-03"]), "x": [1.0, 2.0]})
    local = tmp_path / "summary.json"
    local.write_text('{"ok": true}')

    log_evaluation(
        cfg,
        run_id,
        metrics,
        {"plots/test_fan.png": fig},
        {"evaluation/test_days.parquet": frame},
        {"evaluation/per_ticker.csv": "ticker\nGOOG\n"},
        {str(local): "backtest"},
    )

    logged = mc.get_run(run_id).data.metrics
    assert len(logged) == 2346  # every finite number; no name, NaN or flag
    assert logged["test_m2344"] == 2344 / 7 and logged["test_days"] == 60
    assert not {"best_baseline", "nan", "flag"} & set(logged)
    assert fig.number not in pyplot().get_fignums()  # closed once logged
    names = {a.path for folder in ("plots", "evaluation", "backtest")
             for a in mc.list_artifacts(run_id, folder)}  # fmt: skip
    assert names == {
        "plots/test_fan.png",
        "evaluation/test_days.parquet",
        "evaluation/per_ticker.csv",
        "backtest/summary.json",
    }
    back = pd.read_parquet(
        mc.download_artifacts(run_id, "evaluation/test_days.parquet", str(tmp_path))
    )
    assert list(back["as_of"]) == ["2013-01-02", "2013-01-03"]
