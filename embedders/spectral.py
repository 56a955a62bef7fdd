"""Numpy-only spectral features (the `handcrafted` backbone's, and MusiCNN's mel filters), reproducing librosa
0.11's definitions.

librosa's feature code costs about 2 s to import (scipy.signal, scipy.stats, numba), which a one-off
`musicrec similar --audio` cannot afford. This module computes the same quantities with numpy alone, following
librosa 0.11.0's defaults for every call the backbones make:

* STFT: periodic Hann window, centred frames, zero (``constant``) padding of n_fft // 2 on both sides.
* Mel filters: Slaney mel scale and Slaney area normalisation; power_to_db with ref 1, amin 1e-10, top_db 80.
* MFCC: orthonormal DCT-II of the dB mel spectrogram (computed in float64; librosa's scipy.fft DCT works
  in float32, so MFCCs agree to a few float32 ulps rather than bit for bit).
* Chroma: tuning from piptrack (fmin 150 Hz, fmax 4 kHz, threshold 0.1) and pitch_tuning (0.01-bin
  histogram), Ellis chroma filters (ctroct 5, octwidth 2, L2 column norm, starting at C), max-normalised.
* Spectral contrast (fmin 200 Hz, 6 bands, quantile 0.02, dB), centroid, bandwidth (p = 2), roll-off (85 %),
  flatness (amin 1e-10, power 2), zero-crossing rate (edge-padded centred frames), RMS from a spectrogram.
* Onset strength (mean over mel bands of the positive dB difference, lag 1, centred), tempo from the
  autocorrelation tempogram (8 s window, log-normal prior around 120 BPM, at most 320 BPM), and onset
  detection (normalised envelope, peak picking with 30 ms / 100 ms windows, delta 0.07, no backtracking).

Floating-point operations are done in the same dtype and order as librosa where that decides a rounding
(float32 spectrogram, float64 filter banks), so all features except MFCCs are bit-identical to librosa's.
Spectrogram-shaped arrays are (n_bins, n_frames), as in librosa.
"""
from __future__ import annotations

import functools

import numpy as np

STFT_BLOCK_FRAMES = 1024  # frames transformed at once: float64 temporaries of ~16 MB at n_fft 2048
_F32_TINY = np.finfo(np.float32).tiny
_F64_TINY = np.finfo(np.float64).tiny


# --------------------------------------------------------------------------------------------------------------
# Framing and STFT


@functools.cache
def hann_window(length: int) -> np.ndarray:
    """Periodic ("DFT-even") Hann window of `length` samples, float64, as scipy.signal.get_window('hann')."""
    if length <= 1:
        return np.ones(length)
    phase = np.linspace(-np.pi, np.pi, length + 1)
    return (0.5 + 0.5 * np.cos(phase))[:-1]


def frame_count(n_samples: int, hop: int) -> int:
    """Number of centred frames librosa produces for a signal of `n_samples` samples."""
    return 1 + n_samples // hop


def stft_magnitude(wave: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """|STFT| of a mono waveform, shape (1 + n_fft // 2, 1 + len(wave) // hop).

    Centred frames (zero padding of n_fft // 2 samples on each side), periodic Hann window. The FFT is taken
    in float64 and the complex result rounded to complex64 (complex128 for float64 input), as librosa.stft
    does; the magnitude has the input's precision. The result is a Fortran-ordered view, like librosa's.
    """
    wave = np.asarray(wave)
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError("audio must be floating-point")
    if wave.ndim != 1 or not np.isfinite(wave).all():
        raise ValueError("audio must be a finite one-dimensional array")
    complex_dtype = np.complex128 if wave.dtype == np.float64 else np.complex64
    padded = np.pad(wave, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    magnitude = np.empty((frames.shape[0], n_fft // 2 + 1), dtype=wave.dtype)
    for start in range(0, frames.shape[0], STFT_BLOCK_FRAMES):  # float64 temporaries of one block at a time
        block = frames[start:start + STFT_BLOCK_FRAMES] * hann_window(n_fft)
        magnitude[start:start + STFT_BLOCK_FRAMES] = np.abs(np.fft.rfft(block, axis=-1).astype(complex_dtype))
    return magnitude.T


def fft_frequencies(sr: float, n_fft: int) -> np.ndarray:
    """Centre frequency in Hz of each STFT bin, shape (1 + n_fft // 2,)."""
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


# --------------------------------------------------------------------------------------------------------------
# Decibels, mel spectrogram, MFCC


def power_to_db(power: np.ndarray, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """10 log10(max(amin, power)) relative to 1, floored at (overall maximum - top_db); keeps the dtype."""
    db = 10.0 * np.log10(np.maximum(amin, power))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


def amplitude_to_db(amplitude: np.ndarray, amin: float = 1e-5, top_db: float | None = 80.0) -> np.ndarray:
    """20 log10(max(amin, |amplitude|)) relative to 1, floored at (overall maximum - top_db)."""
    return power_to_db(np.square(np.abs(amplitude)), amin=amin**2, top_db=top_db)


_MEL_F_SP = 200.0 / 3  # Hz per mel in the linear (below 1 kHz) part of the Slaney scale
_MEL_MIN_LOG_HZ = 1000.0
_MEL_MIN_LOG_MEL = _MEL_MIN_LOG_HZ / _MEL_F_SP
_MEL_LOGSTEP = np.log(6.4) / 27.0  # mels per natural-log unit above 1 kHz


def hz_to_mel(hz: float) -> float:
    """Slaney mel value of one frequency in Hz (linear below 1 kHz, logarithmic above)."""
    if hz >= _MEL_MIN_LOG_HZ:
        return _MEL_MIN_LOG_MEL + np.log(hz / _MEL_MIN_LOG_HZ) / _MEL_LOGSTEP
    return hz / _MEL_F_SP


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Frequencies in Hz of an array of Slaney mel values."""
    hz = _MEL_F_SP * mels
    log_part = mels >= _MEL_MIN_LOG_MEL
    hz[log_part] = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOGSTEP * (mels[log_part] - _MEL_MIN_LOG_MEL))
    return hz


@functools.cache
def mel_filters(sr: float, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular mel filter bank from 0 Hz to sr / 2, float32 (n_mels, 1 + n_fft // 2)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_frequencies(sr, n_fft))
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    area = 2.0 / (edges[2:] - edges[:-2])
    weights = (weights * area[:, None]).astype(np.float32)
    weights.flags.writeable = False
    return weights


def mel_power(power: np.ndarray, sr: float, n_mels: int) -> np.ndarray:
    """Mel power spectrogram (n_mels, n_frames) from a power spectrogram (1 + n_fft // 2, n_frames)."""
    basis = mel_filters(sr, 2 * (power.shape[0] - 1), n_mels)
    return np.einsum("...ft,mf->...mt", power, basis, optimize=True)


@functools.cache
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """First `n_out` rows of the orthonormal DCT-II matrix of size `n_in`, float64 (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    basis.flags.writeable = False
    return basis


def mfcc(mel_db: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """MFCCs (n_mfcc, n_frames): orthonormal DCT-II along the mel axis of a dB mel spectrogram.

    Computed in float64 and returned in the input's dtype.
    """
    return (dct_matrix(mel_db.shape[0], n_mfcc) @ mel_db.astype(np.float64)).astype(mel_db.dtype)


# --------------------------------------------------------------------------------------------------------------
# Tuning and chroma


def _parabolic_shift(spectrum: np.ndarray) -> np.ndarray:
    """Offset in bins (-1..1, float like `spectrum`) of the parabola through each bin and its neighbours.

    Zero at the first and last bin and wherever the vertex would lie beyond the neighbours. The curvature
    and slope are evaluated in float64 from the float32 neighbour sum/difference, as librosa's numba code does.
    """
    below, centre, above = spectrum[:-2], spectrum[1:-1], spectrum[2:]
    curvature = (above + below).astype(np.float64) - 2.0 * centre.astype(np.float64)
    slope = (above - below).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(np.abs(slope) >= np.abs(curvature), 0.0, -slope / curvature)
    shift = np.zeros_like(spectrum)
    shift[1:-1] = inner
    return shift


def _local_maxima(x: np.ndarray) -> np.ndarray:
    """Boolean mask along axis 0: x[i] > x[i-1] and x[i] >= x[i+1]; never bin 0; last bin if above its neighbour."""
    peaks = np.zeros(x.shape, dtype=bool)
    peaks[1:-1] = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])
    peaks[-1] = x[-1] > x[-2]
    return peaks


def pitch_candidates(
    spectrum: np.ndarray, sr: float, fmin: float = 150.0, fmax: float = 4000.0, threshold: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """librosa.piptrack: interpolated frequencies (Hz) and magnitudes of spectral peaks, each like `spectrum`.

    A peak is a local maximum over frequency inside [fmin, fmax) that exceeds `threshold` times the frame's
    maximum; elsewhere both outputs are 0.
    """
    spectrum = np.abs(spectrum)
    n_fft = 2 * (spectrum.shape[0] - 1)
    freqs = fft_frequencies(sr, n_fft)
    slope = np.gradient(spectrum, axis=0)
    shift = _parabolic_shift(spectrum)
    skew = 0.5 * slope * shift
    floor = threshold * np.max(spectrum, axis=0, keepdims=True)
    in_band = ((max(fmin, 0.0) <= freqs) & (freqs < min(fmax, sr / 2)))[:, None]
    rows, cols = np.nonzero(in_band & _local_maxima(spectrum * (spectrum > floor)))
    pitches = np.zeros_like(spectrum)
    mags = np.zeros_like(spectrum)
    pitches[rows, cols] = (rows + shift[rows, cols]) * float(sr) / n_fft
    mags[rows, cols] = spectrum[rows, cols] + skew[rows, cols]
    return pitches, mags


def hz_to_octaves(hz: np.ndarray, tuning: float = 0.0, bins_per_octave: int = 12) -> np.ndarray:
    """Octaves above C0 (A440 / 16, shifted by `tuning` fractions of a bin), keeps the dtype of `hz`."""
    a440 = 440.0 * 2.0 ** (tuning / bins_per_octave)
    return np.log2(np.asarray(hz) / (float(a440) / 16))


def pitch_tuning(frequencies: np.ndarray, resolution: float = 0.01, bins_per_octave: int = 12) -> float:
    """Most common deviation (fraction of a bin, in [-0.5, 0.5)) of positive frequencies from equal temperament.

    Histogram of the residuals with bins of `resolution`; returns the left edge of the fullest bin, 0.0 when
    there is no positive frequency.
    """
    frequencies = np.atleast_1d(frequencies)
    frequencies = frequencies[frequencies > 0]
    if frequencies.size == 0:
        return 0.0
    residual = np.mod(bins_per_octave * hz_to_octaves(frequencies), 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    counts, _ = np.histogram(residual, edges)
    return float(edges[np.argmax(counts)])


def estimate_tuning(power: np.ndarray, sr: float, bins_per_octave: int = 12) -> float:
    """librosa.estimate_tuning of a (power) spectrogram: pitch_tuning of its above-median-magnitude peaks."""
    pitches, mags = pitch_candidates(power, sr)
    voiced = pitches > 0
    threshold = np.median(mags[voiced]) if voiced.any() else 0.0
    return pitch_tuning(pitches[(mags >= threshold) & voiced], bins_per_octave=bins_per_octave)


@functools.cache
def chroma_filters(sr: float, n_fft: int, tuning: float = 0.0, n_chroma: int = 12) -> np.ndarray:
    """Ellis chroma filter bank, float32 (n_chroma, 1 + n_fft // 2), first row C.

    Each FFT bin gets a Gaussian bump (width one chroma bin or the bin spacing) around its pitch class; columns
    are L2-normalised, then weighted by a Gaussian over octaves centred on octave 5 (about 1 kHz), 2 octaves wide.
    """
    freqs = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    pitch = n_chroma * hz_to_octaves(freqs, tuning=tuning, bins_per_octave=n_chroma)
    pitch = np.concatenate(([pitch[0] - 1.5 * n_chroma], pitch))
    width = np.concatenate((np.maximum(pitch[1:] - pitch[:-1], 1.0), [1]))
    distance = np.subtract.outer(pitch, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / np.tile(width, (n_chroma, 1))) ** 2)
    norm = np.sum(np.abs(weights) ** 2, axis=0, keepdims=True) ** (1.0 / 2)
    norm[norm < _F64_TINY] = 1.0
    weights = weights / norm
    weights *= np.tile(np.exp(-0.5 * (((pitch / n_chroma - 5.0) / 2) ** 2)), (n_chroma, 1))
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    bank = np.ascontiguousarray(weights[:, : int(1 + n_fft / 2)], dtype=np.float32)
    bank.flags.writeable = False
    return bank


def normalize_columns(x: np.ndarray, norm=np.max) -> np.ndarray:
    """Each column of `x` divided by `norm` of its absolute values (np.max or np.sum), in float64, then stored in
    x's dtype; columns whose norm is below that dtype's `tiny` are left alone."""
    scale = norm(np.abs(x).astype(float), axis=0, keepdims=True)
    scale[scale < np.finfo(x.dtype).tiny] = 1.0
    out = np.empty_like(x)
    out[:] = x / scale
    return out


def chroma(power: np.ndarray, sr: float) -> np.ndarray:
    """12-bin chromagram (n_frames columns, each scaled to max 1) of a power spectrogram, tuning estimated."""
    n_fft = 2 * (power.shape[0] - 1)
    bank = chroma_filters(sr, n_fft, estimate_tuning(power, sr))
    return normalize_columns(np.einsum("cf,...ft->...ct", bank, power, optimize=True))


# --------------------------------------------------------------------------------------------------------------
# Spectral shape


def spectral_contrast(
    magnitude: np.ndarray, sr: float, fmin: float = 200.0, n_bands: int = 6, quantile: float = 0.02
) -> np.ndarray:
    """Peak-minus-valley contrast in dB, float64 (n_bands + 1, n_frames).

    Bands are [0, fmin], then octaves from fmin up, the last extended to Nyquist. Peak and valley are the means
    of the top and bottom `quantile` fraction (at least one bin) of each band's magnitudes; both go through
    power_to_db (top_db 80 over the whole peak, resp. valley, array) before subtracting.
    """
    freqs = fft_frequencies(sr, 2 * (magnitude.shape[0] - 1))
    edges = np.zeros(n_bands + 2)
    edges[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    valley = np.zeros((n_bands + 1, magnitude.shape[1]))
    peak = np.zeros_like(valley)
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        band = (freqs >= low) & (freqs <= high)
        members = np.flatnonzero(band)
        if k > 0:
            band[members[0] - 1] = True
        if k == n_bands:
            band[members[-1] + 1 :] = True
        values = magnitude[band, :]
        if k < n_bands:
            values = values[:-1, :]
        count = max(int(np.rint(quantile * np.sum(band))), 1)
        ordered = np.sort(values, axis=0)
        valley[k] = np.mean(ordered[:count], axis=0)
        peak[k] = np.mean(ordered[-count:], axis=0)
    return power_to_db(peak) - power_to_db(valley)


def spectral_centroid(magnitude: np.ndarray, sr: float) -> np.ndarray:
    """Magnitude-weighted mean frequency in Hz, float64 (1, n_frames)."""
    freqs = fft_frequencies(sr, 2 * (magnitude.shape[0] - 1))[:, None]
    return np.sum(freqs * normalize_columns(magnitude, np.sum), axis=0, keepdims=True)


def spectral_bandwidth(magnitude: np.ndarray, sr: float, centroid: np.ndarray | None = None) -> np.ndarray:
    """Magnitude-weighted standard deviation of frequency around the centroid, Hz, float64 (1, n_frames)."""
    freqs = fft_frequencies(sr, 2 * (magnitude.shape[0] - 1))
    if centroid is None:
        centroid = spectral_centroid(magnitude, sr)
    deviation = np.abs(np.subtract.outer(centroid[0], freqs).T)
    return np.sum(normalize_columns(magnitude, np.sum) * deviation**2, axis=0, keepdims=True) ** (1.0 / 2)


def spectral_rolloff(magnitude: np.ndarray, sr: float, roll_percent: float = 0.85) -> np.ndarray:
    """Lowest bin frequency (Hz) whose cumulative magnitude reaches `roll_percent` of the total, (1, n_frames)."""
    freqs = fft_frequencies(sr, 2 * (magnitude.shape[0] - 1))
    cumulative = np.cumsum(magnitude, axis=0)
    reached = cumulative >= roll_percent * cumulative[-1:]
    first = np.argmax(reached, axis=0)
    return freqs[first][None, :]


def spectral_flatness(magnitude: np.ndarray, amin: float = 1e-10, power: float = 2.0) -> np.ndarray:
    """Geometric over arithmetic mean of max(amin, magnitude ** power) per frame, (1, n_frames)."""
    floored = np.maximum(amin, magnitude**power)
    geometric = np.exp(np.mean(np.log(floored), axis=0, keepdims=True))
    return geometric / np.mean(floored, axis=0, keepdims=True)


def zero_crossing_rate(wave: np.ndarray, frame_length: int = 2048, hop: int = 512) -> np.ndarray:
    """Fraction of sign changes per centred frame (edge padding), float64 (1, 1 + len(wave) // hop).

    Samples with |x| <= 1e-10 count as +0; the first sample of a frame never counts as a crossing.
    """
    padded = np.pad(wave, frame_length // 2, mode="edge")
    negative = np.signbit(np.where(np.abs(padded) <= 1e-10, 0.0, padded))
    crossing = np.zeros(padded.size + 1, dtype=np.int64)
    crossing[2:] = np.cumsum(negative[1:] != negative[:-1])  # crossing[i + 1] = crossings at samples 1..i
    starts = np.arange(frame_count(wave.size, hop)) * hop
    per_frame = crossing[starts + frame_length] - crossing[starts + 1]
    return (per_frame / frame_length)[None, :]


def rms_from_magnitude(magnitude: np.ndarray, frame_length: int) -> np.ndarray:
    """Root-mean-square of each frame's windowed signal via Parseval, float32 (1, n_frames).

    DC and (for even frame_length) Nyquist bins count half, as they appear once in the one-sided spectrum.
    """
    energy = np.square(magnitude, dtype=np.float32)
    energy[0] *= 0.5
    if frame_length % 2 == 0:
        energy[-1] *= 0.5
    return np.sqrt(2 * np.sum(energy, axis=0, keepdims=True) / frame_length**2)


# --------------------------------------------------------------------------------------------------------------
# Rhythm


def onset_strength(mel_db: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Spectral-flux onset envelope (n_frames,), dtype of `mel_db`.

    Mean over mel bands of max(0, S[t] - S[t - 1]); shifted right by 1 + n_fft // (2 hop) frames (zeros in
    front) so that it lines up with centred frames, and cut to the input's length.
    """
    flux = np.maximum(0.0, mel_db[:, 1:] - mel_db[:, :-1])
    envelope = np.mean(flux, axis=0)
    lead = 1 + n_fft // (2 * hop)
    return np.pad(envelope, (lead, 0))[: mel_db.shape[1]]


def _fast_length(n: int) -> int:
    """Smallest integer >= n with no prime factor above 5 (a fast real-FFT size, as scipy.fft.next_fast_len)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def tempogram(envelope: np.ndarray, win_length: int) -> np.ndarray:
    """Autocorrelation tempogram (win_length lags, n_frames), each frame scaled to max 1, float64.

    Frames of `win_length` envelope values centred on each envelope frame (ends padded by linear ramps
    from 0), Hann-weighted, autocorrelated via a zero-padded FFT.
    """
    n = envelope.shape[-1]
    half = win_length // 2
    padded = np.pad(envelope, (half, half), mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win_length)[:n]
    windowed = frames * hann_window(win_length)
    size = _fast_length(2 * win_length - 1)
    spectrum = np.fft.rfft(windowed, n=size, axis=-1)
    autocorr = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=size, axis=-1)[:, :win_length]
    peak = np.max(np.abs(autocorr), axis=-1, keepdims=True)
    peak[peak < _F64_TINY] = 1.0
    return np.ascontiguousarray((autocorr / peak).T)


def tempo(
    envelope: np.ndarray,
    sr: float,
    hop: int = 512,
    start_bpm: float = 120.0,
    std_bpm: float = 1.0,
    ac_size: float = 8.0,
    max_tempo: float = 320.0,
) -> float:
    """Global tempo in BPM: the tempogram lag maximising log1p(1e6 * mean autocorrelation) + log-normal prior.

    The prior is Gaussian in log2(BPM) around `start_bpm` with `std_bpm` octaves; lags faster than `max_tempo`
    are excluded. Returns one of 60 sr / (hop k), k = 1..win_length - 1.
    """
    win_length = int(ac_size * sr) // hop
    strength = np.mean(tempogram(envelope, win_length), axis=-1)
    bpms = np.zeros(win_length)
    bpms[0] = np.inf
    bpms[1:] = 60.0 * sr / (hop * np.arange(1.0, win_length))
    log_prior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    log_prior[: int(np.argmax(bpms < max_tempo))] = -np.inf
    return float(bpms[np.argmax(np.log1p(1e6 * strength) + log_prior)])


def _running_sum_f32(x: np.ndarray, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of x[max(0, n - before) : n + after] for each n, accumulated left to right in x's dtype, and counts."""
    n = x.shape[0]
    total = np.zeros_like(x)
    count = np.zeros(n, dtype=np.int64)
    index = np.arange(n)
    for offset in range(-before, after):
        source = index + offset
        valid = (source >= 0) & (source < n)
        total = total + np.where(valid, x[np.clip(source, 0, n - 1)], 0)
        count += valid
    return total, count


def peak_pick(
    x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float, wait: int
) -> np.ndarray:
    """Indices of peaks of a 1-D float array, as librosa.util.peak_pick (frames for all window sizes).

    x[n] is a peak if it equals max(x[n - pre_max : n + post_max]), is at least
    mean(x[n - pre_avg : n + post_avg]) + delta, and lies more than `wait` samples after the previous peak.
    The mean is accumulated left to right in x's dtype and the test done in float32, like librosa's numba loop.
    """
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    window = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, (pre_max, post_max - 1), constant_values=-np.inf), pre_max + post_max
    )
    is_max = x == window.max(axis=-1)
    total, count = _running_sum_f32(x, pre_avg, post_avg)
    average = (total.astype(np.float64) / count).astype(x.dtype)
    candidates = np.flatnonzero(is_max & (x >= average + np.float32(delta)))
    peaks = []
    next_allowed = 0
    for index in candidates.tolist():
        if index >= next_allowed:
            peaks.append(index)
            next_allowed = index + wait + 1
    return np.asarray(peaks, dtype=np.int64)


def onset_frames(envelope: np.ndarray, sr: float, hop: int = 512) -> np.ndarray:
    """Frame indices of onsets (librosa.onset.onset_detect defaults, no backtracking) in an onset envelope.

    The envelope is scaled to [0, 1]; peaks need 30 ms of pre-max window, 100 ms + 1 frame of average window,
    delta 0.07 and a 30 ms wait.
    """
    normalized = envelope - np.min(envelope, keepdims=True)
    normalized /= np.max(normalized, keepdims=True) + np.finfo(normalized.dtype).tiny
    if not normalized.any() or not np.all(np.isfinite(normalized)):
        return np.zeros(0, dtype=np.int64)
    frames_30ms = int(np.ceil(0.03 * sr // hop))
    frames_100ms = int(np.ceil(0.10 * sr // hop))
    return peak_pick(
        normalized,
        pre_max=frames_30ms,
        post_max=1,
        pre_avg=frames_100ms,
        post_avg=frames_100ms + 1,
        delta=0.07,
        wait=frames_30ms,
    )


def onset_count(envelope: np.ndarray, sr: float, hop: int = 512) -> int:
    """Number of onsets librosa.onset.onset_detect finds in an onset envelope."""
    return int(onset_frames(envelope, sr, hop).size)
