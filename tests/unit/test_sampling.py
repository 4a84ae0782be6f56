"""Windows per epoch: a fixed budget sampled across tickers, gathered batch by batch."""

import numpy as np
import pandas as pd

from pipeline.data.features import FEATURES, assign_splits, make_features, prepare
from pipeline.forecasting.sampling import EpochRows, WindowBatches, fixed_sample
from tests.helpers import random_walk_bars


def test_epochs_walk_a_shuffled_pass_before_any_window_repeats() -> None:
    rows = np.arange(100, 110)
    epochs = EpochRows(rows, per_epoch=4, seed=0)
    first = [epochs.next() for _ in range(2)]
    seen = np.concatenate([*first, epochs.next()[:2]])  # 10 rows: one full pass
    assert all(len(e) == 4 for e in first)
    assert sorted(seen) == list(rows)
    again = EpochRows(rows, per_epoch=4, seed=0)
    assert np.array_equal(again.next(), first[0])  # seeded


def test_fewer_windows_than_the_budget_is_every_window_each_epoch() -> None:
    rows = np.arange(7)
    epochs = EpochRows(rows, per_epoch=20_000, seed=3)
    a, b = epochs.next(), epochs.next()
    assert sorted(a) == sorted(b) == list(rows) and not np.array_equal(a, b)


def test_the_validation_sample_is_fixed_by_its_seed() -> None:
    rows = np.arange(50, 1050)
    a, b = fixed_sample(rows, 100, seed=42), fixed_sample(rows, 100, seed=42)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100 and set(a) <= set(rows)
    assert list(a) == sorted(a)
    assert not np.array_equal(a, fixed_sample(rows, 100, seed=43))
    assert np.array_equal(fixed_sample(rows[:10], 100, seed=42), rows[:10])  # all, if fewer


def test_batches_gather_windows_of_one_ticker_and_one_split() -> None:
    one = make_features(random_walk_bars(120, seed=1), 5, 5).assign(ticker="A")
    two = make_features(random_walk_bars(90, seed=2), 5, 5).assign(ticker="B")
    for f in (one, two):
        f["split"] = assign_splits(f, 0.2, 0.2)
    pooled = pd.concat([one, two], ignore_index=True)
    prep = prepare(pooled, window=6)
    batches = WindowBatches(prep, prep.rows["train"], batch_size=16, per_epoch=40, seed=0)
    assert len(batches) == 3  # 16 + 16 + 8
    x, y = batches[2]
    assert x.shape == (8, 6, len(FEATURES)) and y.shape == (8, 2)
    first = batches.current
    batches.on_epoch_end()
    assert not np.array_equal(first, batches.current)  # the next epoch's windows
    assert set(batches.current) <= set(prep.rows["train"])
