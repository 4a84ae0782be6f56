"""The memo of windows run: the same outputs as running every window, only the new ones
run, exact (no near-match counts), within its bound, and right after it forgets."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.forecasting.memo import WindowMemo

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


def test_a_request_a_session_later_runs_only_its_newest_window(series: np.ndarray) -> None:
    memo = WindowMemo(network, WINDOW, capacity=1000)
    first = memo(series[:50])
    assert memo.ran == 47 and len(memo) == 47
    np.testing.assert_array_equal(first, every_window(series[:50]))
    for day in range(51, 60):  # a client asking every session: the same rows and one newer
        np.testing.assert_array_equal(
            memo(series[day - 50 : day]), every_window(series[:day])[-47:]
        )
    assert memo.ran == 47 + 9
    memo(series[20:50])  # a shorter request inside one already run: nothing new
    assert memo.ran == 47 + 9


def test_a_window_is_known_by_its_exact_rows(series: np.ndarray) -> None:
    memo = WindowMemo(network, WINDOW, capacity=1000)
    memo(series[:10])
    nudged = series[:10].copy()
    nudged[5, 1] = np.nextafter(nudged[5, 1], np.float32(np.inf))  # one ulp, one cell
    np.testing.assert_array_equal(memo(nudged), every_window(nudged))
    assert memo.ran == 7 + 4  # the four windows holding row 5 ran again, the rest did not
    # the same rows in another order are other windows
    shuffled = series[:10][::-1].copy()
    np.testing.assert_array_equal(memo(shuffled), every_window(shuffled))


def test_it_keeps_no_more_than_its_capacity_and_answers_right_after_forgetting(
    series: np.ndarray,
) -> None:
    memo = WindowMemo(network, WINDOW, capacity=25)
    rng, asked = np.random.default_rng(1), 0
    for _ in range(60):  # requests here and there: windows kept, forgotten, run again
        start = int(rng.integers(0, 250))
        rows = series[start : start + int(rng.integers(WINDOW, 45))]
        np.testing.assert_array_equal(memo(rows), every_window(rows))
        assert len(memo) <= 25
        asked += len(rows) - WINDOW + 1
    assert memo.ran < asked  # some were kept
    fresh = WindowMemo(network, WINDOW, capacity=25)
    fresh(series[:40])  # 37 windows, more than it keeps: the newest 25 are kept
    np.testing.assert_array_equal(fresh(series[15:40]), every_window(series[15:40]))
    assert fresh.ran == 37  # those 22 windows were all kept
    fresh(series[:15])
    assert fresh.ran == 37 + 12  # the oldest were not


def test_the_same_window_twice_in_one_request(series: np.ndarray) -> None:
    flat = np.tile(series[:1], (12, 1))  # a constant series: every window the same
    memo = WindowMemo(network, WINDOW, capacity=5)
    mixed = np.concatenate([flat, series[:12], flat])
    np.testing.assert_array_equal(memo(mixed), every_window(mixed))
    np.testing.assert_array_equal(memo(mixed), every_window(mixed))
    assert len(memo) <= 5
