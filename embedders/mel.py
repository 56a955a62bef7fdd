"""Log-compressed mel spectrograms as MusiCNN was trained on them, computed with torch.

Parameters follow musicnn's `configuration.py` and `extractor.batch_data`: 16 kHz audio, periodic Hann window
of n_fft = 512 samples, hop 256 samples (16 ms), centred frames with reflect padding (librosa < 0.10, which
musicnn was trained with), power spectrogram (|STFT|^2), 96 Slaney-normalised mel bands from 0 Hz to 8 kHz
(`librosa.filters.mel` defaults), then log10(10000 * mel + 1). The original casts the mel power to float16
before the log, which overflows to inf on loud audio; here the whole chain stays in float32.
"""
from __future__ import annotations

import numpy as np
import torch

from embedders.spectral import mel_filters

SAMPLE_RATE = 16000  # Hz
N_FFT = 512  # samples per STFT frame
HOP_LENGTH = 256  # samples between frames
N_MELS = 96  # mel bands
LOG_GAIN = 10000.0  # log10(LOG_GAIN * power + 1)


class LogMel(torch.nn.Module):
    """Waveforms (batch, samples) float32 at 16 kHz -> log-mel (batch, frames, 96) float32, where
    frames = samples // 256 + 1 (centred frames)."""

    def __init__(self) -> None:
        super().__init__()
        filters = mel_filters(SAMPLE_RATE, N_FFT, N_MELS)  # (96, 257), librosa.filters.mel's defaults
        self.register_buffer("mel_basis", torch.from_numpy(filters.T.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        waveforms = waveforms.float()
        spectrum = torch.stft(
            waveforms, n_fft=N_FFT, hop_length=HOP_LENGTH, window=self.window,
            center=True, pad_mode="reflect", return_complex=True,
        )  # (batch, 257, frames)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = torch.matmul(power.transpose(1, 2), self.mel_basis)  # (batch, frames, 96)
        return torch.log10(LOG_GAIN * mel + 1.0)

