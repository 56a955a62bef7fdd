"""The `hf_audio` backbone: self-supervised waveform encoders (MERT, Music2Vec, HuBERT, wav2vec 2.0, ...) through
transformers' `AutoModel`, from a local folder only.

Weights: the `weights` option names a folder holding
`config.json` + `model.safetensors` (or `pytorch_model.bin`) and, when the model has one,
`preprocessor_config.json`. Architectures built into transformers (HuBERT, wav2vec 2.0, data2vec-audio: the
Music2Vec checkpoints are data2vec-audio) load as they are. MERT ships its own modelling code
(`modeling_MERT.py`, `configuration_MERT.py` beside its config.json, named in the config's `auto_map`): copy the
whole Hugging Face folder of e.g. `m-a-p/MERT-v1-95M` to a local path and pass `trust_remote_code=True`, which
runs that folder's Python code, so only do it for a folder you trust (it is off by default).

Audio policy: the sample rate is the `sample_rate` option, else the feature extractor's, else the config's
`sampling_rate`, else 24 kHz (MERT's). Each track is cut into `window_s` windows every `hop_s` seconds, at most
`max_windows` of them spread evenly over the track (`embedders.windows`); a track shorter than a window is one
window of its own length (zero-padded to `MIN_WINDOW_S` when shorter still), so no silence is pooled. Each
window goes through the feature extractor when there is one, else is normalised to zero mean and unit variance
(wav2vec 2.0's `do_normalize`). Window vector: the hidden states of `layer` (an index into `hidden_states`,
where 0 is the input to the first transformer layer, or "mean" of all of them), pooled over time ("mean" or
"max"); channels are never averaged. Track vector: mean of its window vectors. On CUDA the model runs in float16.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from catalog.ingest import sha256_of
from embedders.base import Backbone, register_backbone
from embedders.hf_weights import inference_dtype, resolve_weights, torch_device, weights_sha256
from embedders.windows import frame_windows

EXPECTED_WEIGHTS = (
    "a local transformers folder with config.json + model.safetensors (+ preprocessor_config.json), "
    "e.g. a copy of m-a-p/MERT-v1-95M (then also trust_remote_code=True) or a HuBERT / wav2vec 2.0 model"
)
DEFAULT_SAMPLE_RATE = 24_000
MIN_WINDOW_S = 1.0
Pooling = Literal["mean", "max"]


def _sample_rate(option: int | None, feature_extractor, config) -> int:
    """The rate the model expects (see the module docstring); an explicit option must agree with the extractor."""
    extractor_rate = getattr(feature_extractor, "sampling_rate", None)
    if option is not None and extractor_rate is not None and option != extractor_rate:
        raise ValueError(f"hf_audio: sample_rate={option} but the feature extractor expects {extractor_rate} Hz")
    for rate in (option, extractor_rate, getattr(config, "sampling_rate", None)):
        if rate:
            return int(rate)
    return DEFAULT_SAMPLE_RATE


@register_backbone
class HFAudioEmbedder(Backbone):
    """Pooled hidden states of a transformers audio encoder; `dim` is the model's hidden size."""

    name = "hf_audio"
    version = "1"
    needs_gpu = True
    weight_options = ("weights",)

    @dataclass(frozen=True)
    class Options:
        """weights: the model folder (module docstring); layer: index into hidden_states (negative counts from
        the last) or "mean"; pooling over time: "mean" or "max"; window_s / hop_s (default window_s) in
        seconds; max_windows: cap per track (None: all); batch_windows: windows per forward pass; device:
        "cpu", "cuda" (default: CUDA when available); trust_remote_code: run the folder's modelling code (MERT)."""

        weights: str
        layer: int | Literal["mean"] = -1
        pooling: Pooling = "mean"
        sample_rate: int | None = None
        window_s: float = 5.0
        hop_s: float | None = None
        max_windows: int | None = 12
        batch_windows: int = 8
        device: str | None = None
        trust_remote_code: bool = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        weights, layer, pooling, sample_rate, window_s = o.weights, o.layer, o.pooling, o.sample_rate, o.window_s
        hop_s, max_windows, batch_windows, device = o.hop_s, o.max_windows, o.batch_windows, o.device
        trust_remote_code = o.trust_remote_code
        path = resolve_weights(weights, "hf_audio", EXPECTED_WEIGHTS)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"hf_audio: {path} is not a folder holding config.json; "
                                    f"expected {EXPECTED_WEIGHTS}")
        if pooling not in ("mean", "max"):
            raise ValueError(f"hf_audio: pooling={pooling!r}; expected 'mean' or 'max' (over time)")
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        n_states = int(config.num_hidden_layers) + 1
        if layer != "mean" and not (isinstance(layer, int) and -n_states <= layer < n_states):
            raise ValueError(f"hf_audio: layer={layer!r}; expected 'mean' or an int in [{-n_states}, {n_states - 1}] "
                             f"({n_states} hidden states in {path / 'config.json'})")
        self.device = torch_device(device)
        self.dtype = inference_dtype(self.device)
        model = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        self.model = model.float().eval().to(self.device, self.dtype)
        self.feature_extractor = (
            AutoFeatureExtractor.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
            if (path / "preprocessor_config.json").is_file() else None
        )
        self.sample_rate = _sample_rate(sample_rate, self.feature_extractor, config)
        self.dim = int(config.hidden_size)
        self.layer = layer
        self.pooling = pooling
        self.window_s = float(window_s)
        self.hop_s = self.window_s if hop_s is None else float(hop_s)
        self.max_windows = max_windows
        self.batch_windows = batch_windows
        self._weights_sha256 = weights_sha256(path)
        self._config_sha256 = sha256_of(path / "config.json")
        self._model_type = str(config.model_type)

    def _inputs(self, windows: np.ndarray) -> dict[str, torch.Tensor]:
        """Model inputs for equal-length windows (n, samples): the feature extractor's, else normalised waves."""
        if self.feature_extractor is not None:
            features = self.feature_extractor(list(windows), sampling_rate=self.sample_rate, return_tensors="pt")
        else:
            centred = windows - windows.mean(axis=1, keepdims=True)
            features = {"input_values": torch.from_numpy(centred / np.sqrt(centred.var(axis=1, keepdims=True) + 1e-7))}
        return {key: value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)
                for key, value in features.items()}

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Pooled hidden states of equal-length windows: float32 (n, samples) -> float32 (n, dim)."""
        states = self.model(**self._inputs(windows), output_hidden_states=True).hidden_states
        hidden = torch.stack(states).mean(dim=0) if self.layer == "mean" else states[self.layer]  # (n, frames, dim)
        pooled = hidden.mean(dim=1) if self.pooling == "mean" else hidden.amax(dim=1)
        return pooled.float().cpu().numpy()

    def track_windows(self, wave: np.ndarray) -> np.ndarray:
        """The windows embedded for one track, (n_windows, window_len); a short track is one window of its length."""
        seconds = max(wave.size / self.sample_rate, MIN_WINDOW_S)
        window_s = min(self.window_s, seconds)
        return frame_windows(wave, self.sample_rate, window_s, self.hop_s, self.max_windows, pad="zeros")

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 for a batch of mono tracks at `sample_rate`: mean over each track's window vectors."""
        vectors = []
        for wave in waveforms:
            windows = self.track_windows(wave)
            pooled = [self.embed_windows(windows[start : start + self.batch_windows])
                      for start in range(0, len(windows), self.batch_windows)]
            vectors.append(np.concatenate(pooled).mean(axis=0))
        return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, self.dim), np.float32)

    def provenance(self) -> dict[str, str]:
        cap = "all" if self.max_windows is None else f"at most {self.max_windows} spread evenly"
        return {
            "weights_sha256": self._weights_sha256,
            "config_sha256": self._config_sha256,
            "model_type": self._model_type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "window_policy": f"{self.window_s:g} s windows every {self.hop_s:g} s, {cap}; shorter tracks one "
                             f"window of their own length (min {MIN_WINDOW_S:g} s); {self.sample_rate} Hz",
            "pooling": f"layer {self.layer} hidden states, {self.pooling} over time, mean over windows",
        }
