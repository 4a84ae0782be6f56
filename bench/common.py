"""Shared set-up for the benchmarks: the shipped series, featurised and split as in the pipeline."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.config import load_config
from pipeline.data.bars import read_bars_csv
from pipeline.data.features import assign_splits, make_features
from pipeline.data.ingest import sample_path


def sample_features(ticker: str = "GOOG") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bars, features with split) exactly as the daily run on the last sample day builds them."""
    cfg = load_config(environ={})
    bars = read_bars_csv(sample_path(ticker))
    fc = cfg.features
    feats = make_features(bars, fc.volatility_window, fc.volume_window)
    feats["split"] = assign_splits(feats, fc.val_fraction, fc.test_fraction)
    return bars, feats


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - start, 2)
