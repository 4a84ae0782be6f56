"""The network's outputs for windows a serving process has already run, kept.

The adaptive widths forecast again, on every request, each session before the newest that
the request carries (up to the version's lookback: a 250-row request is 209 windows). A
client asking once a session sends the bars it sent the session before, and one newer:
all of its windows but the newest are ones the server has run. Kept, they make such a
request one window through the network instead of 209 (docs/benchmarks.md, Serving).

Exact: a window is known by its rows' float32 bytes themselves (each distinct row gets a
number, a window is the bytes of its rows' numbers), never by a hash that could stand for
two windows. A window's output does not depend on the others in its call (checked in
tests/unit/test_memo.py), so an answer is the same to the last digit whether its windows
were kept or run. Bounded: past `capacity` windows the least recently used go first, and
past twice as many rows all row numbers are forgotten at once; a number is never reused, so a
forgotten row cannot make a kept window match rows it was not run on.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.forecasting.lite import Network

ID = np.dtype(np.int64)  # a row's number: never wraps, so never reused
# rows numbered before all are forgotten, per window kept: a series' w windows have
# w + window - 1 rows (a 250-row request: 209 windows on 228 rows)
ROWS_PER_WINDOW = 2


class WindowMemo:
    """`network` (windows -> outputs) over every window of `window` consecutive rows,
    running only the windows it has not kept (see the module docstring)."""

    def __init__(self, network: Network, window: int, capacity: int):
        self.network, self.window, self.capacity = network, window, capacity
        self._row_ids: dict[bytes, int] = {}
        self._slots: OrderedDict[bytes, int] = OrderedDict()  # a window -> its output's row
        self._outputs = np.zeros((0, 0), dtype=np.float32)
        self._numbers = itertools.count()
        self._lock = threading.Lock()  # one request's bookkeeping at a time
        self.ran = 0  # windows run through the network, for tests and benchmarks

    def __len__(self) -> int:
        return len(self._slots)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The outputs of the windows ending on each of `rows`' rows from the window-th on
        ((m, features) -> (m - window + 1, outputs)), oldest first."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        with self._lock:
            keys = self._window_keys(rows)
            get, move = self._slots.get, self._slots.move_to_end
            slots = [get(key, -1) for key in keys]  # -1: not kept
            fresh = []
            for i, slot in enumerate(slots):
                if slot < 0:
                    fresh.append(i)
                else:  # kept: used now
                    move(keys[i])
            if not fresh:
                return self._outputs[slots]
            windows = sliding_window_view(rows, self.window, axis=0).transpose(0, 2, 1)
            ran = np.asarray(self.network(windows[fresh]), dtype=np.float32)
            self.ran += len(fresh)
            if len(self._outputs) == 0:
                self._outputs = np.zeros((self.capacity, ran.shape[1]), dtype=np.float32)
            out = self._outputs[slots]  # the fresh rows are overwritten next
            out[fresh] = ran
            self._keep([keys[i] for i in fresh], ran)
            return out

    def _window_keys(self, rows: np.ndarray) -> list[bytes]:
        """Each window's key: the bytes of its rows' numbers (one NumPy view, one call to
        take them out, not a call per window)."""
        row_bytes = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()
        numbers = np.array(self._row_numbers(cast(list[bytes], row_bytes.tolist())), dtype=ID)
        overlapping = np.ndarray(
            (len(rows) - self.window + 1,),
            dtype=np.dtype((np.void, self.window * ID.itemsize)),
            buffer=numbers,
            strides=(ID.itemsize,),
        )
        return list(overlapping.tolist())

    def _row_numbers(self, rows: list[bytes]) -> list[int]:
        """Each row's number: the one it had when last seen, or a new one. Past
        ROWS_PER_WINDOW x `capacity` rows, all are forgotten at once (cheaper than ordering
        them at every request): the windows kept on them can no longer match, and go as the
        least recently used."""
        ids = self._row_ids
        numbers = [ids.get(row, -1) for row in rows]
        for i, number in enumerate(numbers):
            if number < 0:
                if len(ids) >= ROWS_PER_WINDOW * self.capacity:
                    ids.clear()
                numbers[i] = ids.setdefault(rows[i], next(self._numbers))
        return numbers

    def _keep(self, keys: list[bytes], outputs: np.ndarray) -> None:
        """Keep the outputs of windows just run, as the most recently used; past
        `capacity`, the least recently used are forgotten and their rows of the output
        table reused."""
        slots = self._slots
        for key, output in zip(keys[-self.capacity :], outputs[-self.capacity :], strict=True):
            if key in slots:  # the same window twice in one request
                continue
            slot = len(slots) if len(slots) < self.capacity else slots.popitem(last=False)[1]
            slots[key] = slot
            self._outputs[slot] = output
