"""Which failures a task retries: only the transient ones, said on the console."""

from __future__ import annotations

import datetime as dt
import errno
import sqlite3
from types import SimpleNamespace

import pytest
import requests
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from pipeline.config import ConfigError
from pipeline.data.validate import ValidationFailed
from pipeline.orchestration import failures


def ti(try_number: int = 1, retries: int = 2) -> SimpleNamespace:
    task = SimpleNamespace(
        retry_delay=dt.timedelta(seconds=300),
        retry_exponential_backoff=True,
        max_retry_delay=dt.timedelta(hours=1),
    )
    return SimpleNamespace(task=task, try_number=try_number, max_tries=retries)


def config_error() -> Exception:
    from pipeline.sections import ServingConfig

    try:
        ServingConfig.model_validate({"port": "not a port"})
    except ValidationError as exc:
        return exc
    raise AssertionError


PERMANENT = [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "/landing/GOOG.csv"),
    PermissionError(errno.EACCES, "Permission denied", "/state/runs/2013-03-01"),
    OSError(errno.ENOSPC, "No space left on device", "/state/curated/GOOG.parquet"),
    IsADirectoryError(errno.EISDIR, "Is a directory", "/state/runs/x.jsonl"),
    ValueError("Item wrong length 0 instead of 1"),
    KeyError("Close"),
    ConfigError("validation.calendar: unknown calendar 'XNYSE'"),
    ValidationFailed("FAIL high_is_highest: 1 row"),
    MlflowException("RESOURCE_DOES_NOT_EXIST: model not found"),
]
TRANSIENT = [
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    TimeoutError("read timed out"),
    sqlite3.OperationalError("database is locked"),
    requests.ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/runs/get"),
    MlflowException("API request failed: Max retries exceeded (connection refused)"),
]


@pytest.mark.parametrize("exc", PERMANENT, ids=lambda e: type(e).__name__)
def test_a_permanent_error_fails_at_once_saying_why(exc: Exception) -> None:
    retry, line = failures.decide(exc, ti())
    assert not retry and line.endswith("(not retried: no retry can fix this)")
    if isinstance(exc, OSError):
        assert line.startswith(f"cannot use {exc.filename}: {exc.strerror}")


def test_a_bad_config_is_permanent() -> None:
    assert failures.decide(config_error(), ti())[0] is False


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_a_transient_error_is_retried_and_the_wait_is_said(exc: Exception) -> None:
    retry, line = failures.decide(exc, ti(try_number=2))
    assert retry and line.startswith("retrying in about 600 s: ")  # 300 s, doubled
    assert failures.decide(exc, ti(try_number=3))[0] is False  # no try left
