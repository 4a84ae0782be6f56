"""`python -m pipeline`: the output formats and exit codes other tools rely on."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import build_parser, main
from pipeline.commands import EXIT_REFUSED
from pipeline.config import Config, throwaway_env
from pipeline.data.ingest import sample_path
from pipeline.data.suite import validate_file

FAIL_LINE = re.compile(r"^FAIL (?P<rule>[a-z_]+): (?P<detail>.+)$")


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


def test_clean_sample_passes(cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(sample_path())]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ")
    assert re.fullmatch(rf"OK {re.escape(str(sample_path()))}: \d+ expectations passed\n", out)


def test_one_fail_line_per_failed_expectation(
    cfg: Config, tmp_path: Path, sample_bars: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = sample_bars.copy()
    bad.loc[1000, "Volume"] = -5.0
    bad.loc[1200, "Low"] = 0.0
    bad.loc[1300, "Low"] = 0.0
    path = _write(bad, tmp_path / "bad.csv")
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    matches = [FAIL_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m["rule"] for m in matches if m] == ["positive_prices", "volume_non_negative"]
    assert "row 1200" in lines[0] and "row 1300" in lines[0]  # one expectation, both rows
    assert lines == [str(f) for f in validate_file(path, cfg).failures]


def test_unreadable_file_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["validate", str(tmp_path / "bin.csv")]) == 1
    assert main(["validate", str(tmp_path / "absent.csv")]) == 1
    assert "FAIL file:" in capsys.readouterr().out


def test_bad_config_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIPELINE__TUNE__N_TRIALS", "0")
    assert main(["validate", str(sample_path())]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "config error" in captured.err and "tune.n_trials" in captured.err
    monkeypatch.delenv("PIPELINE__TUNE__N_TRIALS")
    assert main(["--config", str(tmp_path / "none.yaml"), "validate", str(sample_path())]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_a_bad_invocation_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["promote", "--ticker", "GOOG"])  # --version is required
    assert err.value.code == 2 and "--version" in capsys.readouterr().err


def test_refused_moves_are_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in throwaway_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["rollback", "--ticker", "GOOG"]) == EXIT_REFUSED
    assert "no earlier production version" in capsys.readouterr().err
    assert main(["promote", "--ticker", "GOOG", "--version", "1", "--force"]) == EXIT_REFUSED
    assert "has no version 1" in capsys.readouterr().err
    assert main(["serve", "--ticker", "GOOG"]) == EXIT_REFUSED
    assert "no production model for GOOG" in capsys.readouterr().err
    assert main(["audit", "--ticker", "GOOG"]) == 1  # nothing was moved: said, not silence
    said = capsys.readouterr()
    assert said.out == "" and "no audit trail for price_lstm_universe" in said.err


def test_parser_knows_every_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--csv", "x.csv", "--ticker", "ACME"])
    assert (args.command, args.csv, args.ticker) == ("run", "x.csv", "ACME")
    args = parser.parse_args(["serve", "--workers", "2", "--port", "6001"])
    assert (args.workers, args.port, args.ticker) == (2, 6001, "GOOG")
    args = parser.parse_args(["rollback"])
    assert (args.ticker, args.version, args.force) == ("GOOG", None, False)
    for argv in (["dag-test", "d", "2013-03-01"], ["serve"], ["ui"], ["audit"]):
        assert callable(parser.parse_args(argv).func)


def test_cli_contract_in_a_subprocess(tmp_path: Path, sample_bars: pd.DataFrame) -> None:
    env = {**os.environ, "PIPELINE__STATE_DIR": str(tmp_path / "state")}
    bad = _write(sample_bars.drop(columns="High"), tmp_path / "bad.csv")
    procs = [  # both at once: each spends seconds importing GX
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "validate", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for path in (sample_path(), bad)
    ]
    (ok_out, ok_err), (bad_out, _) = (p.communicate(timeout=120) for p in procs)
    assert procs[0].returncode == 0 and ok_out.startswith("OK "), ok_err
    assert procs[1].returncode == 1 and bad_out.startswith("FAIL columns:")
    assert not (tmp_path / "state").exists()


BAD_TICKER_ARGV = [
    ["run", "--csv", "x.csv", "--ticker", "/abs/state/curated/GOOG"],
    ["run", "--csv", "x.csv", "--ticker", "../../x"],
    ["promote", "--ticker", "../x", "--version", "1"],
    ["rollback", "--ticker", "A/B"],
    ["audit", "--ticker", "GOOG' or '1'='1"],
    ["serve", "--ticker", ".."],
]


@pytest.mark.parametrize("argv", BAD_TICKER_ARGV, ids=lambda a: a[0])
def test_a_ticker_that_is_not_a_symbol_is_a_usage_error_before_anything_runs(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for key, value in throwaway_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert "is not a plain symbol" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no store was touched


def test_a_dead_tracking_server_is_named_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    for key, value in throwaway_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PIPELINE__TRACKING__CONNECT_TIMEOUT_S", "0.5")
    monkeypatch.setenv("PIPELINE__TRACKING__CONNECT_RETRIES", "1")
    for argv in (
        ["audit"],
        ["serve"],
        ["promote", "--version", "1", "--force"],
        ["rollback"],
    ):
        started = time.monotonic()
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"tracking server unreachable at {uri}" in err, err
        assert "Traceback" not in err and time.monotonic() - started < 30  # not minutes


def test_an_unusable_state_directory_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for key, value in throwaway_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIPELINE__STATE_DIR", str(blocker / "state"))
    assert main(["run", "--csv", str(sample_path()), "--ticker", "GOOG"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use") and str(blocker) in err
    assert blocker.read_text() == "not a directory"


def test_force_can_be_made_to_need_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for key, value in throwaway_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIPELINE__REGISTRY__FORCE_REQUIRES_REASON", "true")
    assert main(["promote", "--version", "1", "--force"]) == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert main(["rollback", "--force"]) == 2
    # with a reason it goes on to the usual checks (here: there is nothing to roll back to)
    assert main(["rollback", "--force", "--reason", "bad data in v2"]) == EXIT_REFUSED


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["dag-test", "price_pipeline", "2013-13-01"], "is not a date"),
        (["dag-test", "price_pipeline", "01/03/2013"], "is not a date"),
        (["promote", "--version", "abc"], "not a positive whole number"),
        (["promote", "--version", "0"], "not a positive whole number"),
        (["serve", "--port", "99999"], "not a TCP port"),
        (["serve", "--workers", "0"], "not a positive whole number"),
    ],
)
def test_malformed_arguments_are_usage_errors(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2 and said in capsys.readouterr().err


def test_a_config_file_that_is_not_text_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00tickers: [X]")
    assert main(["--config", str(bad), "validate", str(sample_path())]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
