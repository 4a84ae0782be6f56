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
