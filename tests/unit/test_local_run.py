import datetime as dt
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline import local_run, steps, validate
from pipeline.carry import Carry
from pipeline.config import Config


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
    assert local_run.run_csv(cfg, str(csv), "ACME") == {"ok": True}
    assert ran == list(steps.SEQUENCE)
    local, carry = seen[0]
    assert carry["ticker"] == "ACME" and carry["pipeline_run_id"].startswith("cli-")
    assert dt.date.fromisoformat(carry["day"]) == sample_bars["Date"].iloc[299].date()
    assert local.source.kind == "csv" and not local.state.is_relative_to(cfg.state)
    assert not local.state.parent.exists()  # the throw-away directory is gone afterwards
