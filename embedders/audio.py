"""Audio decoding for the embedders: read any file soundfile reads, downmix to mono, resample with soxr."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from catalog.sniff import describe


class AudioDecodeError(ValueError):
    """A track could not be turned into a waveform; the message names the file and the reason."""


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
        raise AudioDecodeError(f"{path}: cannot decode audio: {describe(path)} (decoder: {exc})") from None
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio samples")
    mono = audio.mean(axis=1)
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(f"{path}: decoded audio holds NaN or inf samples")
    return mono
