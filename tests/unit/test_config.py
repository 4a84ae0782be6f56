from pathlib import Path

import pytest

from pipeline.config import Config, ConfigError, load_config, throwaway_config, throwaway_env


def test_defaults_load_and_are_frozen() -> None:
    cfg = load_config(environ={})
    assert cfg.tickers == ["AAPL", "GOOG", "IBM", "MSFT"] and cfg.source.kind == "sample"
    assert cfg.tracking_uri.startswith("sqlite:////")  # made absolute, not cwd-relative
    with pytest.raises(ValueError):
        cfg.tickers = ["X"]  # type: ignore[misc]


def test_env_overrides_any_key_and_mlflow_uri() -> None:
    cfg = load_config(
        environ={
            "PIPELINE__VALIDATION__MAX_ABS_LOG_MOVE": "0.3",
            "PIPELINE__TICKERS": "[AAPL, MSFT]",
            "MLFLOW_TRACKING_URI": "postgresql://u@h/db",
        }
    )
    assert cfg.validation.max_abs_log_move == 0.3
    assert cfg.tickers == ["AAPL", "MSFT"]
    assert cfg.tracking_uri == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PIPELINE__VALIDATION__MAX_ABS_LOG_MOVE": "lots"}, "validation.max_abs_log_move"),
        ({"PIPELINE__SOURCE__KIND": "ftp"}, "source.kind"),
        ({"PIPELINE__TUNE__N_TRIALS": "0"}, "tune.n_trials"),
        ({"PIPELINE__FEATURES__NOT_A_KEY": "1"}, "features.not_a_key"),
        ({"PIPELINE__TICKERS": "['GO OG']"}, "GO OG"),
    ],
)
def test_bad_value_names_key_and_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(environ=env)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tickers: [GOOG\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml", environ={})


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("state_dir: st\ntune: {storage: 'sqlite:///st/o.db'}\n")
    cfg = load_config(path, environ={})
    assert cfg.state == tmp_path / "st"
    assert cfg.optuna_storage == f"sqlite:///{tmp_path}/st/o.db"


def test_throwaway_config_keeps_every_store_under_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE__STATE_DIR", "/somewhere/else")  # the process env is ignored
    cfg = throwaway_config(tmp_path, tune__n_trials=2, env={"PIPELINE__TICKERS": "[AAPL]"})
    assert cfg.state == tmp_path / "state"
    assert cfg.tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert cfg.resolve(cfg.tracking.artifact_root) == tmp_path / "mlruns" / "artifacts"
    assert cfg.optuna_storage == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert cfg.resolve(cfg.stack.dir) == tmp_path / "stack"
    assert cfg.tune.n_trials == 2 and cfg.tickers == ["AAPL"]
    assert set(throwaway_env(tmp_path)) == {
        "PIPELINE__STATE_DIR",
        "MLFLOW_TRACKING_URI",
        "PIPELINE__TRACKING__ARTIFACT_ROOT",
        "OPTUNA_STORAGE",
        "PIPELINE__STACK__DIR",
    }


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("PIPELINE__TUNE__SPACE__WINDOW", "[0]", "tune.space.window.0 = 0"),
        ("PIPELINE__TUNE__SPACE__UNITS", "[-5]", "tune.space.units.0 = -5"),
        ("PIPELINE__TUNE__SPACE__UNITS", "[]", "tune.space.units = []"),
        ("PIPELINE__TUNE__SPACE__DROPOUT", "[0.9, 0.1]", "low end above its high end"),
        ("PIPELINE__TUNE__SPACE__LEARNING_RATE", "[-1, 0]", "tune.space.learning_rate.0 = -1"),
        ("PIPELINE__TUNE__N_TRIALS", "{a: [", "tune.n_trials = '{a: [' (PIPELINE__TUNE__N_TRIALS)"),
        ("PIPELINE__TICKERS", "[GOOG, ../x]", "config key tickers = "),
    ],
)
def test_a_value_that_cannot_run_is_refused_naming_its_key(key: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(environ={key: value})
    assert says in str(err.value)
    assert "<root>" not in str(err.value)


def test_cli_exits_2_on_a_malformed_override(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from pipeline.cli import main

    monkeypatch.setenv("PIPELINE__TUNE__N_TRIALS", "{a: [")
    assert main(["validate", "x.csv"]) == 2
    assert "config key tune.n_trials" in capsys.readouterr().err


def test_a_copy_with_another_state_dir_uses_it_even_after_the_original_was_read(
    cfg: Config, tmp_path: Path
) -> None:
    assert cfg.layout.root == cfg.state  # read first: nothing may be cached into the copy
    copy = cfg.model_copy(update={"state_dir": tmp_path / "elsewhere"})
    assert copy.state == tmp_path / "elsewhere" and copy.layout.root == tmp_path / "elsewhere"


def test_null_tickers_are_the_universe_s() -> None:
    assert load_config(environ={"PIPELINE__TICKERS": "null"}).tickers == [
        "AAPL",
        "GOOG",
        "IBM",
        "MSFT",
    ]
    cfg = load_config(environ={"PIPELINE__UNIVERSE": "sp500"})
    assert cfg.universe == "sp500" and len(cfg.tickers) == 394 and "BF.B" in cfg.tickers
    assert cfg.tickers == sorted(cfg.tickers)
    picked = load_config(environ={"PIPELINE__UNIVERSE": "sp500", "PIPELINE__TICKERS": "[BF.B]"})
    assert picked.tickers == ["BF.B"]


def test_null_tickers_of_a_csv_source_are_its_files(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("MSFT.csv", "BRK.B.csv", "notes.txt"):
        (landing / name).write_text("Date\n")
    (landing / "old.csv").mkdir()  # a folder, not a file
    env = {"PIPELINE__SOURCE__KIND": "csv", "PIPELINE__SOURCE__CSV_DIR": str(landing)}
    assert load_config(environ=env).tickers == ["BRK.B", "MSFT"]
    (landing / "bad name.csv").write_text("Date\n")
    with pytest.raises(ConfigError, match=r"config key tickers.*bad name\.csv: the file name is"):
        load_config(environ=env)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PIPELINE__SOURCE__KIND": "yfinance"}, "yfinance has no list of tickers"),
        ({"PIPELINE__SOURCE__KIND": "csv", "PIPELINE__SOURCE__CSV_DIR": "/no/such"}, "/no/such"),
        ({"PIPELINE__UNIVERSE": "nasdaq"}, "config key universe = 'nasdaq'"),
        ({"PIPELINE__TICKERS": "[]"}, "config key tickers = []"),
        ({"PIPELINE__SOURCE__OVERLAP_SESSIONS": "1"}, "source.overlap_sessions = 1"),
        ({"PIPELINE__RETENTION__RAW_DAYS": "-1"}, "retention.raw_days = -1"),
    ],
)
def test_a_universe_that_cannot_be_listed_is_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(environ=env)
    assert says in str(err.value) and "<root>" not in str(err.value)


def test_an_empty_landing_folder_is_refused(tmp_path: Path) -> None:
    env = {"PIPELINE__SOURCE__KIND": "csv", "PIPELINE__SOURCE__CSV_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"holds no <TICKER>\.csv file"):
        load_config(environ=env)
    (tmp_path / "universe.csv").write_text("Date\n")
    with pytest.raises(ConfigError, match=r"universe\.csv: 'universe' names the universe model"):
        load_config(environ=env)


def test_new_keys_and_their_defaults() -> None:
    cfg = load_config(environ={"PIPELINE__RETENTION__FEATURES_DAYS": "null"})
    assert cfg.universe == "default" and cfg.source.overlap_sessions == 5
    assert cfg.source.actions_file is None
    assert cfg.retention.raw_days == 30 and cfg.retention.features_days is None
