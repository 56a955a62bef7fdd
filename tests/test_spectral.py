"""`embedders.spectral` against librosa 0.11 as the oracle.

Every intermediate feature the handcrafted backbone uses is compared with the librosa call the backbone used to
make, on tones, a saw wave, noise, clicks at 120 BPM, silence, a clip shorter than one FFT frame, a 30 s mixture
and a random-seeded signal; then the whole 92-vector against a copy of the old librosa-based `features`.
All features are bit-identical to librosa's except the MFCCs (librosa's DCT runs in float32 through scipy.fft,
ours in float64), which agree to a few float32 ulps. A subprocess checks that computing a vector imports none of
librosa, numba, scipy.signal or scipy.stats.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedders import spectral as hf
from embedders.handcrafted import HOP, N_FFT, HandcraftedEmbedder, _octaves

librosa = pytest.importorskip("librosa")

pytestmark = pytest.mark.filterwarnings("ignore:Trying to estimate tuning:UserWarning")

SR = 22050
REPO_ROOT = Path(__file__).resolve().parent.parent


def _seconds(duration: float) -> np.ndarray:
    return np.arange(int(duration * SR)) / SR


def _chord() -> np.ndarray:
    t = _seconds(4)
    return sum(0.25 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)).astype(np.float32)


def _detuned_chord() -> np.ndarray:
    t = _seconds(3)
    cents = 2 ** (30 / 1200)  # 30 cents sharp: exercises the tuning estimate
    return sum(0.2 * np.sin(2 * np.pi * f * cents * t) for f in (220.0, 277.18, 329.63, 880.0)).astype(np.float32)


def _saw() -> np.ndarray:
    return (0.5 * (2 * ((110.0 * _seconds(3)) % 1.0) - 1)).astype(np.float32)


def _noise() -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(3 * SR)).astype(np.float32)


def _clicks() -> np.ndarray:
    wave = np.zeros(6 * SR, np.float32)
    for start in range(0, wave.size - 100, SR // 2):  # 120 BPM
        wave[start : start + 100] += np.hanning(100).astype(np.float32)
    return wave


def _silence() -> np.ndarray:
    return np.zeros(2 * SR, np.float32)


def _short() -> np.ndarray:
    return (0.2 * np.random.default_rng(2).standard_normal(1500)).astype(np.float32)


def _mixture_30s() -> np.ndarray:
    t = _seconds(30)
    rng = np.random.default_rng(3)
    beat = (np.sin(2 * np.pi * 1.7 * t) > 0.95) * rng.standard_normal(t.size) * 0.3
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.25 * t))
    return (tone + beat + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _random() -> np.ndarray:
    rng = np.random.default_rng(12345)
    wave = np.cumsum(rng.standard_normal(2 * SR)) * 0.01  # brown-ish noise
    wave += 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * _seconds(2))
    return (wave / np.abs(wave).max() * 0.5).astype(np.float32)


SIGNALS = {
    "chord": _chord,
    "detuned_chord": _detuned_chord,
    "saw": _saw,
    "noise": _noise,
    "clicks": _clicks,
    "silence": _silence,
    "short": _short,
    "mixture_30s": _mixture_30s,
    "random": _random,
}


@functools.cache
def _wave(name: str) -> np.ndarray:
    """The signal, padded to one FFT frame as HandcraftedEmbedder.features does."""
    wave = SIGNALS[name]()
    return np.pad(wave, (0, max(0, N_FFT - wave.size)))


@functools.cache
def _spectra(name: str) -> dict[str, np.ndarray]:
    """Magnitude, power and dB mel spectrograms of a signal, librosa's and ours."""
    wave = _wave(name)
    ref_mag = np.abs(librosa.stft(wave, n_fft=N_FFT, hop_length=HOP))
    ref_mel = librosa.feature.melspectrogram(S=ref_mag**2, sr=SR, n_mels=64)
    mag = hf.stft_magnitude(wave, n_fft=N_FFT, hop=HOP)
    mel = hf.mel_power(mag**2, SR, n_mels=64)
    return {
        "ref_mag": ref_mag, "ref_mel": ref_mel, "ref_db": librosa.power_to_db(ref_mel),
        "mag": mag, "mel": mel, "db": hf.power_to_db(mel),
    }


def _same(ours: np.ndarray, reference: np.ndarray) -> None:
    """Bit-identical values, shape and dtype."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.dtype == reference.dtype
    np.testing.assert_array_equal(ours, reference)


def reference_features(wave: np.ndarray) -> np.ndarray:
    """The librosa-based `HandcraftedEmbedder.features` as it was before the numpy port (the oracle)."""
    sr = SR
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    magnitude = np.abs(librosa.stft(wave, n_fft=N_FFT, hop_length=HOP))
    power = magnitude**2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20) / 20.0
    chroma = librosa.feature.chroma_stft(S=power, sr=sr)
    contrast = librosa.feature.spectral_contrast(S=magnitude, sr=sr) / 20.0
    centroid = _octaves(librosa.feature.spectral_centroid(S=magnitude, sr=sr))
    bandwidth = _octaves(librosa.feature.spectral_bandwidth(S=magnitude, sr=sr))
    rolloff = _octaves(librosa.feature.spectral_rolloff(S=magnitude, sr=sr))
    flatness = librosa.feature.spectral_flatness(S=magnitude)
    zcr = librosa.feature.zero_crossing_rate(wave, frame_length=N_FFT, hop_length=HOP)[:, : magnitude.shape[1]]
    rms = librosa.amplitude_to_db(librosa.feature.rms(S=magnitude, frame_length=N_FFT), ref=1.0) / 20.0
    frames = np.vstack([mfcc, chroma, contrast, centroid, bandwidth, rolloff, flatness, zcr, rms])
    onset_envelope = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr, hop_length=HOP)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset_envelope, sr=sr, hop_length=HOP))[0])
    onsets = librosa.onset.onset_detect(onset_envelope=onset_envelope, sr=sr, hop_length=HOP)
    seconds = wave.size / sr
    rhythm = np.array([np.log2(max(tempo, 1.0) / 60.0), len(onsets) / seconds / 10.0])
    vector = np.concatenate([frames.mean(axis=1), frames.std(axis=1), rhythm]).astype(np.float32)
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0)


names = pytest.mark.parametrize("name", list(SIGNALS))


@names
def test_spectrogram_mel_and_db_match_librosa(name):
    s = _spectra(name)
    _same(s["mag"], s["ref_mag"])
    assert s["mag"].shape == (1 + N_FFT // 2, 1 + _wave(name).size // HOP)
    _same(s["mel"], s["ref_mel"])
    _same(s["db"], s["ref_db"])


@names
def test_mfcc_matches_librosa_to_float32_rounding(name):
    s = _spectra(name)
    ours = hf.mfcc(s["db"], n_mfcc=20)
    reference = librosa.feature.mfcc(S=s["ref_db"], n_mfcc=20)
    assert ours.dtype == reference.dtype == np.float32
    np.testing.assert_allclose(ours / 20.0, reference / 20.0, rtol=1e-4, atol=1e-5)


@names
def test_tuning_and_chroma_match_librosa(name):
    s = _spectra(name)
    power, ref_power = s["mag"] ** 2, s["ref_mag"] ** 2
    _same(hf._parabolic_shift(power), librosa.core.pitch._parabolic_interpolation(ref_power, axis=-2))
    pitches, mags = hf.pitch_candidates(power, SR)
    ref_pitches, ref_mags = librosa.piptrack(S=ref_power, sr=SR)
    _same(pitches, ref_pitches)
    _same(mags, ref_mags)
    assert hf.estimate_tuning(power, SR) == librosa.estimate_tuning(S=ref_power, sr=SR)
    _same(hf.chroma(power, SR), librosa.feature.chroma_stft(S=ref_power, sr=SR))


def test_tuning_of_a_detuned_chord_is_found():
    power = _spectra("detuned_chord")["mag"] ** 2
    assert hf.estimate_tuning(power, SR) == pytest.approx(0.3, abs=0.05)  # librosa says 0.26


@pytest.mark.parametrize("tuning", [-0.5, -0.13, 0.0, 0.27])
def test_filter_banks_match_librosa(tuning):
    _same(hf.mel_filters(SR, N_FFT, 64), librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64))
    _same(hf.mel_filters(16000, 512, 96), librosa.filters.mel(sr=16000, n_fft=512, n_mels=96))  # MusiCNN's
    _same(hf.chroma_filters(SR, N_FFT, tuning), librosa.filters.chroma(sr=SR, n_fft=N_FFT, tuning=tuning))
    for length in (N_FFT, 344):
        _same(hf.hann_window(length), librosa.filters.get_window("hann", length, fftbins=True))


@names
def test_spectral_shape_features_match_librosa(name):
    s = _spectra(name)
    mag, ref = s["mag"], s["ref_mag"]
    _same(hf.spectral_contrast(mag, SR), librosa.feature.spectral_contrast(S=ref, sr=SR))
    _same(hf.spectral_centroid(mag, SR), librosa.feature.spectral_centroid(S=ref, sr=SR))
    _same(hf.spectral_bandwidth(mag, SR), librosa.feature.spectral_bandwidth(S=ref, sr=SR))
    _same(hf.spectral_rolloff(mag, SR), librosa.feature.spectral_rolloff(S=ref, sr=SR))
    _same(hf.spectral_flatness(mag), librosa.feature.spectral_flatness(S=ref))
    _same(
        hf.amplitude_to_db(hf.rms_from_magnitude(mag, frame_length=N_FFT)),
        librosa.amplitude_to_db(librosa.feature.rms(S=ref, frame_length=N_FFT), ref=1.0),
    )
    wave = _wave(name)
    _same(
        hf.zero_crossing_rate(wave, frame_length=N_FFT, hop=HOP),
        librosa.feature.zero_crossing_rate(wave, frame_length=N_FFT, hop_length=HOP),
    )


@names
def test_onsets_and_tempo_match_librosa(name):
    s = _spectra(name)
    envelope = hf.onset_strength(s["db"], n_fft=N_FFT, hop=HOP)
    ref_envelope = librosa.onset.onset_strength(S=s["ref_db"], sr=SR, hop_length=HOP)
    _same(envelope, ref_envelope)
    _same(hf.tempogram(envelope, 344), librosa.feature.tempogram(onset_envelope=ref_envelope, sr=SR, win_length=344))
    ref_tempo = librosa.feature.tempo(onset_envelope=ref_envelope, sr=SR, hop_length=HOP)
    assert hf.tempo(envelope, SR, hop=HOP) == float(ref_tempo[0])
    ref_onsets = librosa.onset.onset_detect(onset_envelope=ref_envelope, sr=SR, hop_length=HOP)
    np.testing.assert_array_equal(hf.onset_frames(envelope, SR, hop=HOP), ref_onsets)
    assert hf.onset_count(envelope, SR, hop=HOP) == len(ref_onsets)


def test_clicks_have_their_tempo_and_onsets():
    envelope = hf.onset_strength(_spectra("clicks")["db"])
    assert hf.tempo(envelope, SR) == pytest.approx(120, rel=0.03)
    assert hf.onset_count(envelope, SR) in (11, 12)  # 12 clicks; the one at t = 0 may not count


def test_peak_pick_matches_librosa_on_random_envelopes():
    rng = np.random.default_rng(7)
    for size in (1, 2, 5, 40, 400):
        x = rng.random(size).astype(np.float32)
        ours = hf.peak_pick(x, pre_max=1, post_max=1, pre_avg=4, post_avg=5, delta=0.07, wait=1)
        reference = librosa.util.peak_pick(x, pre_max=1, post_max=1, pre_avg=4, post_avg=5, delta=0.07, wait=1)
        np.testing.assert_array_equal(ours, reference)


@names
def test_feature_vector_matches_the_librosa_implementation(name):
    wave = SIGNALS[name]()
    ours = HandcraftedEmbedder().features(wave)
    reference = reference_features(wave)
    assert ours.shape == reference.shape == (92,) and ours.dtype == np.float32
    # Only the 20 MFCC means and 20 MFCC stds can differ, by float32 rounding of librosa's float32 DCT.
    mfcc_slots = np.r_[0:20, 45:65]
    others = np.setdiff1d(np.arange(92), mfcc_slots)
    np.testing.assert_array_equal(ours[others], reference[others])
    np.testing.assert_allclose(ours[mfcc_slots], reference[mfcc_slots], rtol=1e-5, atol=1e-6)


def test_float64_input_gives_librosa_vector_exactly():
    wave = SIGNALS["noise"]().astype(np.float64)  # complex128 STFT, float64 DCT: no rounding difference left
    np.testing.assert_array_equal(HandcraftedEmbedder().features(wave), reference_features(wave))


def test_embedding_does_not_import_librosa_or_heavy_scipy():
    code = (
        "import sys, numpy as np\n"
        "from embedders.handcrafted import HandcraftedEmbedder\n"
        "v = HandcraftedEmbedder().features(np.random.default_rng(0).standard_normal(22050).astype(np.float32))\n"
        "assert v.shape == (92,)\n"
        "print(sorted(m for m in ('librosa', 'numba', 'scipy.signal', 'scipy.stats') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
