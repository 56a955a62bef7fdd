"""Deterministic windowing of a whole track for the window-based backbones (CLAP, hf_audio).

A track is cut into windows of `window_s` seconds every `hop_s` seconds, starting at sample 0. When the hop grid
does not reach the end of the track, one more window ending exactly at the last sample is added, so that every
sample is covered. When the track holds more windows than `max_windows`, the grid is split into `max_windows`
equal segments and the window at the middle of each segment is kept: the choice depends on the track length
only (never on a random generator), spreads over the whole track, and for `max_windows=1` keeps the middle window.
A track shorter than one window gives one window, padded with zeros or filled by repeating the track.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

PadMode = Literal["zeros", "repeat"]


def window_starts(n_samples: int, window_len: int, hop_len: int, max_windows: int | None = None) -> list[int]:
    """Start sample of each window for a track of `n_samples` (>= `window_len`), in increasing order."""
    starts = list(range(0, n_samples - window_len + 1, hop_len))
    if starts[-1] + window_len < n_samples:
        starts.append(n_samples - window_len)
    if max_windows is not None and len(starts) > max_windows:
        segment = len(starts) / max_windows
        starts = [starts[int(np.floor((i + 0.5) * segment))] for i in range(max_windows)]
    return starts


def frame_windows(
    wave: np.ndarray,
    sample_rate: int,
    window_s: float,
    hop_s: float,
    max_windows: int | None = None,
    pad: PadMode = "zeros",
) -> np.ndarray:
    """Cut a mono waveform into windows.

    wave: shape (n_samples,), any float dtype; sample_rate in Hz; window_s and hop_s in seconds.
    pad: how a track shorter than one window is filled up to the window length: "zeros" appends silence,
    "repeat" tiles the track (LAION CLAP's "repeatpad" convention).
    Returns float32 of shape (n_windows, window_len) with window_len = round(window_s * sample_rate) and
    1 <= n_windows <= max_windows (when given). Raises ValueError for an empty or non-1-D wave or a bad setting.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"frame_windows: need a non-empty mono waveform, got shape {wave.shape}")
    window_len = int(round(window_s * sample_rate))
    hop_len = int(round(hop_s * sample_rate))
    if window_len < 1 or hop_len < 1:
        raise ValueError(f"frame_windows: window_s={window_s} and hop_s={hop_s} must be at least one sample "
                         f"at {sample_rate} Hz")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"frame_windows: max_windows={max_windows} must be >= 1 or None")
    if pad not in ("zeros", "repeat"):
        raise ValueError(f"frame_windows: pad={pad!r}; expected 'zeros' or 'repeat'")
    if wave.size < window_len:
        if pad == "repeat":
            filled = np.tile(wave, -(-window_len // wave.size))[:window_len]
        else:
            filled = np.pad(wave, (0, window_len - wave.size))
        return filled[None, :]
    starts = window_starts(wave.size, window_len, hop_len, max_windows)
    return np.stack([wave[start : start + window_len] for start in starts])
