"""The `handcrafted` backbone: MFCC, chroma and spectral statistics, an AcousticBrainz-like baseline.

All features come from one magnitude STFT (n_fft 2048, hop 512 at 22,050 Hz). Quantities are put on
comparable scales (frequencies in octaves above 50 Hz, energies in dB / 20) so that no single feature
dominates a cosine similarity. Output: float32 (n, 92) = mean and std over frames of 20 MFCCs, 12 chroma,
7 spectral-contrast bands, centroid, bandwidth, roll-off, flatness, zero-crossing rate and RMS, plus tempo
(in octaves above 60 BPM) and onset rate (onsets per second / 10).

The features follow librosa 0.11's definitions but are computed with numpy alone
(`embedders.spectral`), so that embedding one file does not pay librosa's ~2 s import.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedders import spectral as hf
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
        magnitude = hf.stft_magnitude(wave, n_fft=N_FFT, hop=HOP)
        power = magnitude**2
        mel_db = hf.power_to_db(hf.mel_power(power, sr, n_mels=64))
        mfcc = hf.mfcc(mel_db, n_mfcc=20) / 20.0
        chroma = hf.chroma(power, sr)
        contrast = hf.spectral_contrast(magnitude, sr) / 20.0
        centroid_hz = hf.spectral_centroid(magnitude, sr)
        centroid = _octaves(centroid_hz)
        bandwidth = _octaves(hf.spectral_bandwidth(magnitude, sr, centroid=centroid_hz))
        rolloff = _octaves(hf.spectral_rolloff(magnitude, sr))
        flatness = hf.spectral_flatness(magnitude)
        zcr = hf.zero_crossing_rate(wave, frame_length=N_FFT, hop=HOP)[:, : magnitude.shape[1]]
        rms = hf.amplitude_to_db(hf.rms_from_magnitude(magnitude, frame_length=N_FFT)) / 20.0
        frames = np.vstack([mfcc, chroma, contrast, centroid, bandwidth, rolloff, flatness, zcr, rms])
        onset_envelope = hf.onset_strength(mel_db, n_fft=N_FFT, hop=HOP)
        tempo = hf.tempo(onset_envelope, sr, hop=HOP)
        onsets = hf.onset_count(onset_envelope, sr, hop=HOP)
        seconds = wave.size / sr
        rhythm = np.array([np.log2(max(tempo, 1.0) / 60.0), onsets / seconds / 10.0])
        vector = np.concatenate([frames.mean(axis=1), frames.std(axis=1), rhythm]).astype(np.float32)
        return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0)

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 92) float32 for a batch of mono 22,050 Hz waveforms."""
        return np.stack([self.features(w) for w in waveforms]) if waveforms else np.zeros((0, self.dim), np.float32)

    def provenance(self) -> dict[str, str]:
        return {"weights_sha256": "none", "policy": f"whole track; stft {N_FFT}/{HOP}; mean+std over frames"}
