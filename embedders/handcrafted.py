"""The `handcrafted` backbone: MFCC, chroma and spectral statistics, an AcousticBrainz-like baseline.

All features come from one magnitude STFT (n_fft 2048, hop 512 at 22,050 Hz). Quantities are put on
comparable scales (frequencies in octaves above 50 Hz, energies in dB / 20) so that no single feature
dominates a cosine similarity. Output: float32 (n, 92) = mean and std over frames of 20 MFCCs, 12 chroma,
7 spectral-contrast bands, centroid, bandwidth, roll-off, flatness, zero-crossing rate and RMS, plus tempo
(in octaves above 60 BPM) and onset rate (onsets per second / 10).
"""
from __future__ import annotations

from collections.abc import Sequence

import librosa
import numpy as np

from embedders.base import Backbone, register_backbone

N_FFT = 2048
HOP = 512


def _octaves(hz: np.ndarray, reference: float = 50.0) -> np.ndarray:
    return np.log2(np.maximum(hz, 1.0) / reference)


@register_backbone
class HandcraftedEmbedder(Backbone):
    name = "handcrafted"
    sample_rate = 22050
    dim = 92
    version = "1"

    def features(self, wave: np.ndarray) -> np.ndarray:
        """Feature vector of one mono waveform, shape (92,) float32."""
        sr = self.sample_rate
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

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 92) float32 for a batch of mono 22,050 Hz waveforms."""
        return np.stack([self.features(w) for w in waveforms]) if waveforms else np.zeros((0, self.dim), np.float32)

    def provenance(self) -> dict[str, str]:
        return {"weights_sha256": "none", "policy": f"whole track; stft {N_FFT}/{HOP}; mean+std over frames"}
