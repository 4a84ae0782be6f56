"""The network's outputs for the windows of requests a serving process has answered, kept.

The adaptive widths forecast again, on every request, each session before the newest that
the request carries (up to the version's lookback: a 250-row request is 209 windows). A
client asking once a session sends the bars it sent the session before, and one newer:
all of its windows but the newest are the previous request's. So a worker keeps each
request's rows and outputs under its newest window, and a request that finds its
predecessor there (the window ending one session before its newest, or up to LOOK_BACK
sessions before, for a client that skipped some) runs only the windows the predecessor
did not have: one, for a client asking every session (docs/benchmarks.md, Serving).

Exact: the outputs are reused only after the rows both requests share are checked equal,
bit for bit (a revised bar anywhere in them and every window is run); a window's output
does not depend on the others in its call (tests/unit/test_lite.py), so an answer is the
same to the last digit whether its windows were kept or run (for a network that takes
any number of windows in one call: LiteRT's; the pyfunc keeps none for the others). Light:
a request is kept as its rows and outputs (about 13 KB for 250 rows), the one it
superseded dropped, and past `capacity` bytes in all the least recently used requests go
first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.forecasting.lite import Network

LOOK_BACK = 10  # sessions a client may skip between two requests and still find the first
ENTRY_BYTES = 400  # what a kept request costs beyond its arrays and key (objects, dict slot)


class Kept(NamedTuple):
    rows: np.ndarray  # (m, features) float32, as the request sent them through the features
    outputs: np.ndarray  # (m - window + 1, outputs): the network's, for each window


class WindowMemo:
    """`network` (windows -> outputs) over every window of `window` consecutive rows,
    running only the windows the request's predecessor did not have (module docstring)."""

    def __init__(self, network: Network, window: int, capacity: int):
        self.network, self.window, self.capacity = network, window, capacity  # bytes
        self._kept: OrderedDict[bytes, Kept] = OrderedDict()  # by the newest window's bytes
        self._windows = 0  # kept, in all
        self.bytes = 0  # what the kept requests take, as `size` counts it
        self._lock = threading.Lock()  # one request's bookkeeping at a time
        self.ran = 0  # windows run through the network, for tests and benchmarks
        self._outputs = 0  # the network's outputs per window, once it has run

    def __len__(self) -> int:
        return self._windows

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The outputs of the windows ending on each of `rows`' rows from the window-th on
        ((m, features) -> (m - window + 1, outputs)), oldest first."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n = len(rows) - self.window + 1
        if n < 1:
            raise ValueError(f"{len(rows)} rows hold no window of {self.window}")
        with self._lock:
            found = self._predecessor(rows)
            if found is None:
                out = self._run(rows, 0, n)
                self._keep(rows, out, None)
                return out
            key, before, offset, start, stop = found  # its windows [start, stop) known
            parts = [self._run(rows, 0, start), before.outputs[start + offset : stop + offset]]
            out = np.concatenate([*parts, self._run(rows, stop, n)])
            self._keep(rows, out, key)
            return out

    def _predecessor(self, rows: np.ndarray) -> tuple[bytes, Kept, int, int, int] | None:
        """The kept request whose newest window is one of this request's LOOK_BACK newest
        and whose rows this request repeats: its key, itself, the offset of its rows (its
        row i + offset is this request's row i) and the windows it has of this request's
        ([start, stop)); None if there is none."""
        w, m = self.window, len(rows)
        for back in range(min(LOOK_BACK, m - w + 1)):
            end = m - back  # this request's rows up to the one ending that window
            key = rows[end - w : end].tobytes()
            before = self._kept.get(key)
            if before is None:
                continue
            offset = len(before.rows) - end
            start = max(0, -offset)  # the rows both have: [start, end) here
            if np.array_equal(rows[start:end], before.rows[start + offset :]):
                return key, before, offset, start, end - w + 1
            # the same newest window, other bars before it (a revision): not reused
        return None

    def _run(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """The network's outputs for the windows [start, stop) of `rows`."""
        if stop <= start:
            return np.zeros((0, self._outputs), dtype=np.float32)
        windows = sliding_window_view(rows[start : stop + self.window - 1], self.window, axis=0)
        out = np.asarray(self.network(windows.transpose(0, 2, 1)), dtype=np.float32)
        self.ran += stop - start
        self._outputs = out.shape[1]
        return out

    def _keep(self, rows: np.ndarray, outputs: np.ndarray, superseded: bytes | None) -> None:
        """Keep a request under its newest window, dropping the kept request it found (the
        same client's earlier one) where it has no more windows, and, past `capacity`
        bytes, the least recently used. A request with fewer windows than one kept under
        the same newest leaves that one."""
        key = rows[len(rows) - self.window :].tobytes()
        same = self._kept.get(key)
        if same is not None and len(same.outputs) > len(outputs):
            self._kept.move_to_end(key)
            return
        for older in (key,) if superseded is None else (superseded, key):
            if older in self._kept and len(self._kept[older].outputs) <= len(outputs):
                self._drop(older)
        kept = Kept(rows.copy(), outputs)
        if size(key, kept) > self.capacity:
            return
        self._kept[key] = kept
        self._windows += len(outputs)
        self.bytes += size(key, kept)
        while self.bytes > self.capacity:
            self._drop(next(iter(self._kept)))

    def _drop(self, key: bytes) -> None:
        kept = self._kept.pop(key)
        self._windows -= len(kept.outputs)
        self.bytes -= size(key, kept)


def size(key: bytes, kept: Kept) -> int:
    """The bytes a kept request takes: its rows, outputs and key, and ENTRY_BYTES."""
    return kept.rows.nbytes + kept.outputs.nbytes + len(key) + ENTRY_BYTES
