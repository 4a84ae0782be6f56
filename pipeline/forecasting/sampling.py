"""Windows per epoch: a fixed budget of training windows sampled across tickers.

As global forecasting models do it (DeepAR's fixed number of batches per epoch, GluonTS'
instance samplers), an epoch is `tune.windows_per_epoch` windows, not every window of
every ticker: the cost of an epoch is set by the budget, not by the universe's size. Each
epoch takes the next windows of a shuffled pass through all of them (a new shuffle when
a pass is used up), so over epochs every window is seen before any is seen twice. When
there are fewer windows than the budget (the four-stock universe), an epoch is every
window, shuffled, as before. Windows are gathered per batch from the scaled rows
(features.Prepared), never materialised all at once.

Validation (early stopping, pruning, the study's objective) is a fixed, seeded sample of
`tune.val_windows` validation windows, the same for every trial and epoch, so trials are
compared on the same windows.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from pipeline.data.features import Prepared

VALIDATION_BATCH = 1024  # windows per validation step: inference only, so the larger the cheaper


def fixed_sample(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` of `rows` drawn once with `seed` (all of them when there are no more), in
    their order."""
    if len(rows) <= size:
        return rows
    chosen = np.random.default_rng(seed).choice(len(rows), size, replace=False)
    return rows[np.sort(chosen)]


class EpochRows:
    """The rows of each epoch: the next `per_epoch` of a shuffled pass through `rows`."""

    def __init__(self, rows: np.ndarray, per_epoch: int, seed: int):
        if not len(rows):
            raise ValueError("no window to train on")
        self.rows, self.size = rows, min(per_epoch, len(rows))
        self.rng = np.random.default_rng(seed)
        self.order, self.at = self.rng.permutation(rows), 0

    def next(self) -> np.ndarray:
        out = []
        need = self.size
        while need:
            if self.at == len(self.order):  # a pass is used up: a new shuffle
                self.order, self.at = self.rng.permutation(self.rows), 0
            take = self.order[self.at : self.at + need]
            self.at += len(take)
            need -= len(take)
            out.append(take)
        return np.concatenate(out)


class WindowBatches(keras.utils.PyDataset):
    """Batches of windows for Keras' fit: `per_epoch` windows an epoch (EpochRows),
    gathered batch by batch from `prep`'s scaled rows."""

    def __init__(
        self, prep: Prepared, rows: np.ndarray, batch_size: int, per_epoch: int, seed: int
    ):
        super().__init__()
        self.prep, self.batch_size = prep, batch_size
        self.epochs = EpochRows(rows, per_epoch, seed)
        self.current = self.epochs.next()

    def __len__(self) -> int:
        return math.ceil(len(self.current) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.prep.windows(self.current[i * self.batch_size : (i + 1) * self.batch_size])

    def on_epoch_end(self) -> None:
        self.current = self.epochs.next()
