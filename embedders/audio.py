"""Audio decoding for the embedders: read any file soundfile reads, downmix to mono, resample with soxr."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from catalog.sniff import describe


class AudioDecodeError(ValueError):
    """A track could not be turned into a waveform; the message names the file and the reason."""


def decode_error(path: Path, exc: Exception) -> AudioDecodeError:
    """The error for a file the decoder refuses: the file, what it is, and the decoder's own words."""
    return AudioDecodeError(f"{path}: cannot decode audio: {describe(path)} (decoder: {exc})")


def load_mono(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode `path` to mono float32 at `sample_rate` Hz, shape (n_samples,). `max_seconds` keeps only the
    first seconds (decoding stops there). Raises AudioDecodeError naming the file."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            native_rate = handle.samplerate
            frames = -1 if max_seconds is None else int(max_seconds * native_rate)
            audio = handle.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise decode_error(path, exc) from None
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio samples")
    mono = audio.mean(axis=1)
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(f"{path}: decoded audio holds NaN or inf samples")
    return mono


def duration_seconds(path: str | Path) -> float:
    """The file's duration from its header (nothing is decoded); AudioDecodeError naming the file."""
    path = Path(path)
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise decode_error(path, exc) from None


def chunk_starts(total_frames: int, chunk_frames: int, max_chunks: int | None) -> list[int]:
    """First frames of the consecutive `chunk_frames` chunks of a file: all of them, or at most `max_chunks`
    spread evenly over the file (the first and the last included)."""
    starts = list(range(0, max(total_frames, 1), chunk_frames))
    if max_chunks is None or len(starts) <= max_chunks:
        return starts
    picks = np.linspace(0, len(starts) - 1, max_chunks).round().astype(int)
    return [starts[i] for i in picks]


def mono_chunks(path: str | Path, sample_rate: int, chunk_seconds: float,
                max_chunks: int | None = None) -> Iterator[np.ndarray]:
    """Decode `path` chunk by chunk: mono float32 at `sample_rate`, `chunk_seconds` each (the last may be
    shorter), all chunks or `max_chunks` spread evenly. Memory holds one chunk, whatever the file's length.
    AudioDecodeError naming the file for an unreadable file or NaN / inf samples."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            native = handle.samplerate
            chunk_frames = max(1, int(round(chunk_seconds * native)))
            for start in chunk_starts(handle.frames, chunk_frames, max_chunks):
                handle.seek(start)
                block = handle.read(frames=chunk_frames, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    continue
                mono = block.mean(axis=1)
                if native != sample_rate:
                    mono = soxr.resample(mono, native, sample_rate, quality="HQ")
                if not np.isfinite(mono).all():
                    raise AudioDecodeError(
                        f"{path}: decoded audio holds NaN or inf samples near {start / native:.0f} s")
                yield np.ascontiguousarray(mono, dtype=np.float32)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, AudioDecodeError):
            raise
        raise decode_error(path, exc) from None
