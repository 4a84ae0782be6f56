"""The memo of requests answered: the same outputs as running every window, only the
windows a request's predecessor did not have run, nothing reused from rows that differ
by a bit, and within its bound in bytes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.forecasting.memo import ENTRY_BYTES, LOOK_BACK, WindowMemo

WINDOW, FEATURES = 4, 3


def network(windows: np.ndarray) -> np.ndarray:
    """A stand-in whose outputs tell windows apart: each window's weighted sum and its
    last row's first feature."""
    weights = np.arange(1, WINDOW * FEATURES + 1, dtype=np.float32).reshape(WINDOW, FEATURES)
    return np.stack([(windows * weights).sum(axis=(1, 2)), windows[:, -1, 0]], axis=1)


def every_window(rows: np.ndarray) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(rows, WINDOW, axis=0)
    return network(windows.transpose(0, 2, 1))


@pytest.fixture
def series() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((300, FEATURES)).astype(np.float32)


def asked(memo: WindowMemo, rows: np.ndarray) -> int:
    """Ask `memo` for `rows`' windows, check them against running all; the windows run."""
    before = memo.ran
    np.testing.assert_array_equal(memo(rows), every_window(rows))
    return memo.ran - before


def test_a_client_asking_every_session_runs_one_window_a_request(series: np.ndarray) -> None:
    memo = WindowMemo(network, WINDOW, capacity=10**7)
    assert asked(memo, series[:50]) == 47
    for day in range(51, 60):  # the same rows and one newer, each session
        assert asked(memo, series[day - 50 : day]) == 1
    assert asked(memo, series[9:59]) == 0  # the same request again
    assert len(memo) == 47  # each superseded request dropped


def test_skipped_sessions_longer_and_shorter_requests(series: np.ndarray) -> None:
    memo = WindowMemo(network, WINDOW, capacity=10**7)
    asked(memo, series[:50])
    assert asked(memo, series[3:53]) == 3  # three sessions later
    assert asked(memo, series[3 + LOOK_BACK : 53 + LOOK_BACK]) == 47  # too long a gap
    assert asked(memo, series[:63]) == 13  # more history: only the older windows run
    assert asked(memo, series[40:63]) == 0  # less history: all its windows known


def test_nothing_is_reused_from_rows_that_differ_by_a_bit(series: np.ndarray) -> None:
    memo = WindowMemo(network, WINDOW, capacity=10**7)
    asked(memo, series[:50])
    revised = series[1:51].copy()
    revised[5, 1] = np.nextafter(revised[5, 1], np.float32(np.inf))  # one ulp, an old bar
    assert asked(memo, revised) == 47  # the same newest windows, other history: all run
    # the unrevised history's next session: the revision's windows are not taken for its
    # (checked by `asked`), the first request's are
    assert asked(memo, series[1:51]) == 1


def test_it_keeps_no_more_bytes_than_its_capacity(series: np.ndarray) -> None:
    memo = WindowMemo(network, WINDOW, capacity=3000)  # two or three small requests
    rng = np.random.default_rng(1)
    for _ in range(80):  # requests here and there: kept, forgotten, run again
        start = int(rng.integers(0, 250))
        asked(memo, series[start : start + int(rng.integers(WINDOW, 45))])
        assert 0 < memo.bytes <= 3000
    asked(memo, series[:150])  # 150 rows, 147 windows: more than it keeps, so not kept
    assert asked(memo, series[1:151]) == 147
    kept = WindowMemo(network, WINDOW, capacity=10**7)
    asked(kept, series[:150])
    # what it counts is what it holds: rows, outputs, the key, and the entry's objects
    assert kept.bytes == 150 * FEATURES * 4 + 147 * 2 * 4 + WINDOW * FEATURES * 4 + ENTRY_BYTES


def test_constant_rows_every_window_the_same(series: np.ndarray) -> None:
    flat = np.tile(series[:1], (12, 1))
    memo = WindowMemo(network, WINDOW, capacity=10**7)
    mixed = np.concatenate([flat, series[:12], flat])
    asked(memo, mixed)
    assert asked(memo, mixed) == 0
    assert asked(memo, flat) == 0  # its newest window is the mixed one's: rows repeated
