"""Deterministic windowing: counts, positions, the cap, short-track padding."""
import numpy as np
import pytest

from embedders.windows import frame_windows, window_starts


def ramp(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32)


def test_grid_covers_the_track_with_a_final_window_ending_at_the_last_sample():
    # 10 samples/s, 2 s windows every 1 s over 5.5 s: starts 0,10,20,30 and the tail window at 35.
    assert window_starts(55, 20, 10) == [0, 10, 20, 30, 35]
    windows = frame_windows(ramp(55), 10, 2.0, 1.0)
    assert windows.shape == (5, 20) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[:, 0], [0, 10, 20, 30, 35])
    assert windows[-1, -1] == 54


def test_exact_fit_adds_no_tail_window():
    assert window_starts(40, 20, 10) == [0, 10, 20]
    assert frame_windows(ramp(40), 10, 2.0, 2.0).shape == (2, 20)


def test_cap_keeps_the_middle_of_equal_segments_of_the_grid():
    starts = window_starts(100, 10, 10)  # 10 windows
    assert starts == list(range(0, 100, 10))
    # 3 segments of 10/3 windows: middles at 1.67, 5, 8.33 -> indices 1, 5, 8
    assert window_starts(100, 10, 10, max_windows=3) == [10, 50, 80]
    assert window_starts(100, 10, 10, max_windows=1) == [50]
    assert window_starts(100, 10, 10, max_windows=10) == starts
    assert window_starts(100, 10, 10, max_windows=50) == starts


@pytest.mark.parametrize("n_windows", [2, 3, 7, 9])
def test_capped_windows_are_distinct_increasing_and_a_subset_of_the_grid(n_windows):
    grid = window_starts(1000, 10, 10)
    capped = window_starts(1000, 10, 10, max_windows=n_windows)
    assert len(capped) == n_windows
    assert capped == sorted(set(capped)) and set(capped) <= set(grid)


def test_windowing_is_deterministic():
    wave = np.random.default_rng(0).standard_normal(12345).astype(np.float32)
    np.testing.assert_array_equal(frame_windows(wave, 100, 10.0, 3.0, 4), frame_windows(wave, 100, 10.0, 3.0, 4))


def test_short_track_is_zero_padded_or_repeated_to_one_window():
    wave = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(frame_windows(wave, 4, 2.0, 2.0), [[1, 2, 3, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(frame_windows(wave, 4, 2.0, 2.0, pad="repeat"), [[1, 2, 3, 1, 2, 3, 1, 2]])


@pytest.mark.parametrize(
    "wave, kwargs",
    [
        (np.zeros(0, np.float32), {}),
        (np.zeros((2, 10), np.float32), {}),
        (np.zeros(10, np.float32), {"window_s": 0.0}),
        (np.zeros(10, np.float32), {"max_windows": 0}),
        (np.zeros(10, np.float32), {"pad": "reflect"}),
    ],
)
def test_bad_input_is_refused(wave, kwargs):
    settings = {"sample_rate": 10, "window_s": 0.5, "hop_s": 0.5} | kwargs
    with pytest.raises(ValueError):
        frame_windows(wave, **settings)
