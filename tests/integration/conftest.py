from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.carry import Carry
from pipeline.config import Config, throwaway_config, throwaway_env
from pipeline.orchestration import steps
from tests.helpers import TINY_BUDGET

DAY = dt.date(2013, 3, 1)

TINY = {
    "PIPELINE__TICKERS": "[GOOG]",  # one series: the DAG paths are the same per ticker
    "PIPELINE__MODEL__SCOPE": "ticker",  # test_dag_run.py runs the universe model
    **TINY_BUDGET,
}
MODEL_HALF = ("tune", "best", "train", "evaluate", "register", "promote")


def store_env(root: Path) -> dict[str, str]:
    """Throw-away stores under `root` and the tiny budget, as environment variables."""
    return {**throwaway_env(root), **TINY}


@pytest.fixture(scope="module")
def lifecycle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle")


@pytest.fixture(scope="module")
def tiny_cfg(lifecycle_root: Path) -> Callable[..., Config]:
    def make(**keys: Any) -> Config:
        return throwaway_config(lifecycle_root, TINY, **keys)

    return make


@pytest.fixture(scope="module")
def prepared(tiny_cfg: Callable[..., Config]) -> Carry:
    """The data half (ingest, validate, features) for the last sample day, once per module."""
    carry = steps.start("GOOG", DAY, "prepared")
    return steps.run_steps(tiny_cfg(), carry, ["ingest", "validate", "features"])


def model_half(cfg: Config, prepared: Carry, pipeline_run_id: str) -> Carry:
    """tune -> ... -> promote on prepared data, as one pipeline run."""
    carry: Carry = {**prepared, "pipeline_run_id": pipeline_run_id}
    return steps.run_steps(cfg, carry, MODEL_HALF)
