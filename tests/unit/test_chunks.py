"""Tickers in chunks: each ticker of a chunk ends on its own, journalled with its reason,
and the chunk goes on with the rest (pipeline/orchestration/chunks.py, dag_tasks.py)."""

import datetime as dt
from pathlib import Path

import pandas as pd

from pipeline import schedule
from pipeline.config import Config, throwaway_config
from pipeline.data.ingest import sample_path
from pipeline.operations import retrain
from pipeline.orchestration import chunks, journal, steps
from pipeline.orchestration.dag_tasks import chunk_step

DAY = dt.date(2013, 3, 1)


def test_chunks_are_even_and_keep_the_order() -> None:
    names = [f"T{i}" for i in range(394)]
    parts = chunks.split(names, 100)
    assert [len(p) for p in parts] == [99, 99, 98, 98]
    assert [t for p in parts for t in p] == names
    assert chunks.split(["A", "B", "C", "D"], 100) == [["A", "B", "C", "D"]]


def _landing(root: Path) -> Path:
    landing = root / "landing"
    landing.mkdir()
    for t in ("GOOG", "IBM"):
        (landing / f"{t}.csv").write_bytes(sample_path(t).read_bytes())
    broken = pd.read_csv(sample_path("MSFT"))
    broken.loc[broken.index[-1], "High"] = 1.0  # its newest bar: High below Low
    broken.to_csv(landing / "NEWCO.csv", index=False)
    return landing


def test_a_new_ticker_with_a_broken_newest_bar_is_left_out_of_the_retrain(
    tmp_path: Path,
) -> None:
    """On a fresh state a retrain's data half goes on without a ticker that cannot
    contribute (its only pull quarantined, no stored bars): at once, with its reason in
    the retrain's report, never retried."""
    cfg: Config = throwaway_config(
        tmp_path, source__kind="csv", source__csv_dir=str(_landing(tmp_path))
    )
    assert cfg.tickers == ["GOOG", "IBM", "NEWCO"]
    plan = {"day": DAY.isoformat(), "trigger": "weekly", "reasons": {}, "mode": "tune"}
    retrain.record_plan(cfg, plan)
    [chunk] = chunks.start(cfg.tickers, DAY, "run-1", cfg.chunk_size, retrain=plan)
    for name in steps.DATA_STEPS:
        chunk = chunk_step(cfg, schedule.RETRAIN, name, chunk, keep_stored=True)
    assert list(chunk["members"]) == ["GOOG", "IBM"]
    left = retrain.record_left_out(cfg, DAY.isoformat(), chunks.members([chunk]))
    assert list(left) == ["NEWCO"] and "0 valid stored sessions" in left["NEWCO"]
    report = retrain.plans_path(cfg, DAY).read_text()
    assert '"left_out"' in report and "NEWCO" in report
    outcome = journal.ticker_outcomes(journal.read(cfg, schedule.RETRAIN, DAY))["NEWCO"]
    assert outcome["failed"]["rule"] == "quarantined"  # the day's pull: high_is_highest
    assert outcome["skipped"]["status"] == "too_short"  # then: nothing stored to train on
