"""One run at a time on a state: a second is refused, naming the one that holds it."""

import os
import subprocess
import sys

import pytest

from pipeline.config import throwaway_env
from pipeline.operations import runlock


def test_a_second_run_on_the_same_state_is_refused_naming_the_first(make_cfg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = make_cfg()
    with runlock.hold(cfg, "pipeline daily 2013-03-01"):
        with (
            pytest.raises(runlock.Busy, match="pipeline daily 2013-03-01"),
            runlock.hold(cfg, "pipeline replay"),
        ):
            pass  # pragma: no cover
        env = {**os.environ, **throwaway_env(tmp_path)}
        other = subprocess.run(
            [sys.executable, "-m", "pipeline", "daily", "2013-03-01"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode == 2
        assert f"`pipeline daily 2013-03-01` (pid {os.getpid()}" in other.stderr
    with runlock.hold(cfg, "after"):  # released with its holder
        pass


def test_another_state_on_the_same_stores_is_refused_too(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two states sharing the tracking store, the Optuna storage or Airflow's home would
    tangle their runs there: the lock covers every store a run writes."""
    from pipeline.config import throwaway_config

    first = throwaway_config(tmp_path / "a")
    shared = {"MLFLOW_TRACKING_URI": first.tracking_uri, "OPTUNA_STORAGE": first.optuna_storage}
    second = throwaway_config(tmp_path / "b", env=shared)  # a state of its own
    assert second.layout.root != first.layout.root
    with runlock.hold(first, "pipeline daily 2013-03-01"):
        with (
            pytest.raises(runlock.Busy, match="holds Airflow's metadata DB"),
            runlock.hold(throwaway_config(tmp_path / "c"), "one Airflow home"),
        ):
            pass  # pragma: no cover
        monkeypatch.delenv("AIRFLOW_HOME")  # Airflow's homes apart: the tracking store shared
        with (
            pytest.raises(runlock.Busy, match=r"pid .* holds the tracking store"),
            runlock.hold(second, "pipeline daily 2013-03-01"),
        ):
            pass  # pragma: no cover
        with runlock.hold(throwaway_config(tmp_path / "d"), "its own stores"):
            pass


def test_clean_never_removes_a_held_lock_nor_anything_while_a_run_holds_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.config import throwaway_config

    cfg = throwaway_config(tmp_path)
    roots = [tmp_path / "state", tmp_path / "mlruns"]
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "README.md").write_text("kept")
    (tmp_path / "mlruns" / "artifacts").mkdir()
    curated = cfg.layout.root / "curated" / "GOOG.parquet"
    curated.parent.mkdir(parents=True)
    curated.write_bytes(b"bars")
    with runlock.hold(cfg, "pipeline daily 2013-03-01"):
        assert runlock.clean(roots) == 2  # refused: nothing removed
        assert curated.exists() and (cfg.layout.root / "run.lock").exists()
    assert runlock.clean(roots) == 0
    assert not curated.exists() and not (tmp_path / "mlruns" / "artifacts").exists()
    assert (tmp_path / "mlruns" / "README.md").read_text() == "kept"
    with runlock.hold(cfg, "the next run"):  # the lock file that stayed still locks
        assert runlock.clean(roots) == 2
