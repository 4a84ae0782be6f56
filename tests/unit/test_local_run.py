import datetime as dt
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.carry import Carry
from pipeline.config import Config
from pipeline.data import validate
from pipeline.orchestration import local_run, steps


def test_throwaway_data_keeps_files_and_study_under_tmp(cfg: Config, tmp_path: Path) -> None:
    local = local_run.throwaway_data(cfg, tmp_path / "run")
    assert local.state == tmp_path / "run" / "state"
    assert local.source.kind == "csv" and local.source.csv_dir == tmp_path / "run" / "landing"
    assert local.validation.check_freshness is False
    assert local.optuna_storage == f"sqlite:///{tmp_path / 'run' / 'optuna.db'}"
    # runs and models still go to the configured tracking store; the rest is untouched
    assert local.tracking_uri == cfg.tracking_uri and local.tune.n_trials == cfg.tune.n_trials
    assert cfg.source.kind == "sample" and cfg.validation.check_freshness  # a copy, not an edit


def test_an_unreadable_csv_is_a_validation_failure_naming_it(cfg: Config, tmp_path: Path) -> None:
    missing = tmp_path / "absent.csv"
    named = rf"{re.escape(str(missing))}.*no such file"
    with pytest.raises(validate.ValidationFailed, match=named):
        local_run.run_csv(cfg, str(missing), "ACME")
    garbage = tmp_path / "bin.csv"
    garbage.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(validate.ValidationFailed, match=r"bin\.csv.*not a readable CSV"):
        local_run.run_csv(cfg, str(garbage), "ACME")


def test_run_csv_runs_the_daily_sequence_in_order(
    cfg: Config, tmp_path: Path, sample_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "acme.csv"
    sample_bars.head(300).to_csv(csv, index=False, date_format="%Y-%m-%d")
    ran: list[str] = []
    seen: list[tuple[Config, Carry]] = []

    def recorder(name: str) -> steps.Step:
        def adapter(local: Config, carry: Carry) -> dict[str, Any]:
            ran.append(name)
            seen.append((local, carry))
            assert (local.source.csv_dir / "ACME.csv").read_bytes() == csv.read_bytes()
            return {"promotion": {"ok": True}} if name == "promote" else {}

        return adapter

    monkeypatch.setattr(steps, "STEPS", {name: recorder(name) for name in steps.STEPS})
    summary = local_run.run_csv(cfg, str(csv), "ACME")
    assert ran == list(steps.SEQUENCE)
    local, carry = seen[0]
    assert carry["ticker"] == "ACME" and carry["pipeline_run_id"].startswith("cli-")
    assert dt.date.fromisoformat(carry["day"]) == sample_bars["Date"].iloc[299].date()
    # its own work directory, named after the run, kept (what it printed still exists)
    work = cfg.layout.adhoc_dir() / carry["pipeline_run_id"]
    assert summary == {"ok": True, "work_dir": str(work)}
    assert local.state == work / "state" and local.source.kind == "csv"
    assert local.layout.curated_path("ACME") != cfg.layout.curated_path("ACME")
    assert (work / "landing" / "ACME.csv").is_file()


def test_only_the_newest_work_dirs_are_kept(tmp_path: Path) -> None:
    import os

    for i in range(5):
        (tmp_path / f"cli-{i}").mkdir()
        os.utime(tmp_path / f"cli-{i}", (i, i))
    local_run.prune_work_dirs(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli-3", "cli-4"]


@pytest.mark.parametrize("ticker", ["/abs/state/curated/GOOG", "../../x", "GOOG'"])
def test_a_path_for_a_ticker_writes_nothing(cfg: Config, tmp_path: Path, ticker: str) -> None:
    from pipeline.layout import BadTicker

    csv = tmp_path / "x.csv"
    csv.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,100\n")
    with pytest.raises(BadTicker):
        local_run.run_csv(cfg, str(csv), ticker)
    assert not cfg.state.exists()


def test_a_failed_run_points_only_at_paths_that_still_exist(
    cfg: Config, tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    bad = sample_bars.head(300).copy()
    bad.loc[299, "Low"] = -1.0  # the newest bar fails the GX suite's positive_prices
    csv = tmp_path / "bad.csv"
    bad.to_csv(csv, index=False, date_format="%Y-%m-%d")
    with pytest.raises(validate.ValidationFailed, match="positive_prices") as err:
        local_run.run_csv(cfg, str(csv), "ACME")
    where = re.search(r"quarantined in (\S+);", str(err.value))
    assert where, str(err.value)
    kept = Path(where[1])
    assert kept.is_relative_to(cfg.layout.adhoc_dir()) and (kept / "report.json").is_file()
    assert not cfg.layout.curated_path("ACME").exists()  # the daily store is untouched
