"""The `clap` backbone: LAION CLAP audio (and text) embeddings through transformers' `ClapModel`.

Weights (the `weights` option) are either
- a transformers CLAP folder: `config.json` + `model.safetensors` (or `pytorch_model.bin`), with
  `preprocessor_config.json` and tokenizer files when present (e.g. a local copy of `laion/larger_clap_music`);
- an original LAION checkpoint `.pt` (e.g. `music_audioset_epoch_15_esc_90.14.pt`), plus `config`: a folder
  holding the matching transformers `config.json` (its feature-extractor and tokenizer files are used too) or a
  named config (`htsat-tiny`, `htsat-base`); see `embedders.clap_laion`.

Audio policy: 48 kHz mono; each track is cut into windows of the feature extractor's clip length (10 s for
LAION CLAP) every `hop_s` seconds, at most `max_windows` of them spread evenly over the track
(`embedders.windows`); a track shorter than a window is repeated to fill it (LAION's "repeatpad"). Every window
is one clip for the model (no random crop, no fusion flag: `is_longer` is False, as for a clip of exactly the
clip length). Track vector = mean of the L2-normalised window embeddings, not re-normalised (its norm, at most 1,
measures how much the windows agree). Text: tokens truncated to 77 (LAION's context length), L2-normalised.
On CUDA the model runs in float16.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

from catalog.ingest import sha256_of
from embedders.base import Backbone, register_backbone
from embedders.clap_laion import NAMED_CONFIGS, load_laion_checkpoint
from embedders.hf_weights import inference_dtype, resolve_weights, torch_device, weights_sha256
from embedders.windows import frame_windows

EXPECTED_WEIGHTS = (
    "a transformers CLAP folder (config.json + model.safetensors, e.g. a local copy of laion/larger_clap_music) "
    "or a LAION CLAP checkpoint .pt (e.g. music_audioset_epoch_15_esc_90.14.pt) together with the `config` option"
)
TEXT_MAX_TOKENS = 77
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def _feature_extractor(folder: Path | None, model: ClapModel) -> ClapFeatureExtractor:
    """The folder's feature extractor, else transformers' defaults (LAION's 48 kHz, 10 s, 1024/480 log-mel) with
    the model's mel-bin count and the truncation mode its fusion setting implies."""
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        return ClapFeatureExtractor.from_pretrained(folder, local_files_only=True)
    audio_config = model.config.audio_config
    return ClapFeatureExtractor(
        feature_size=audio_config.num_mel_bins,
        truncation="fusion" if audio_config.enable_fusion else "rand_trunc",
    )


def _tokenizer(folder: Path | None):
    """The folder's tokenizer, or None when it has no tokenizer files (then `embed_text` is unavailable)."""
    if folder is None or not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@register_backbone
class ClapEmbedder(Backbone):
    """CLAP audio/text embedder; `dim` is the model's projection size (512 for LAION CLAP)."""

    name = "clap"
    version = "1"
    needs_gpu = True
    weight_options = ("weights", "config")

    @dataclass(frozen=True)
    class Options:
        """weights: see the module docstring. config: only for a LAION checkpoint. window_s: seconds per
        window, at most the feature extractor's clip length, which is the default; hop_s: seconds between
        window starts (default: window_s); max_windows: cap on windows per track (None: all); batch_windows:
        windows per forward pass; device: "cpu", "cuda" (default: CUDA when available)."""

        weights: str
        config: str | None = None
        device: str | None = None
        window_s: float | None = None
        hop_s: float | None = None
        max_windows: int | None = 8
        batch_windows: int = 8

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        weights, config, device = self.options.weights, self.options.config, self.options.device
        window_s, hop_s = self.options.window_s, self.options.hop_s
        max_windows, batch_windows = self.options.max_windows, self.options.batch_windows
        path = resolve_weights(weights, "clap", EXPECTED_WEIGHTS)
        self.device = torch_device(device)
        self.dtype = inference_dtype(self.device)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"clap: {path} has no config.json; expected {EXPECTED_WEIGHTS}")
            model = ClapModel.from_pretrained(path, local_files_only=True).float().eval()
            folder, config_id, weights_format = path, f"sha256:{sha256_of(path / 'config.json')}", "transformers"
        else:
            if not config:
                raise FileNotFoundError(
                    f"clap: {path} is a LAION checkpoint; also set the `config` option to a folder "
                    f"with the matching transformers CLAP config.json or to one of {sorted(NAMED_CONFIGS)}"
                )
            model, folder = load_laion_checkpoint(path, config)
            config_id = f"sha256:{sha256_of(folder / 'config.json')}" if folder else str(config)
            weights_format = "laion"
        self.model = model.to(self.device, self.dtype)
        self.feature_extractor = _feature_extractor(folder, model)
        self.tokenizer = _tokenizer(folder)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        clip_s = self.feature_extractor.nb_max_samples / self.sample_rate
        self.window_s = clip_s if window_s is None else float(window_s)
        if not 0 < self.window_s <= clip_s:
            raise ValueError(f"clap: window_s={window_s} must be in (0, {clip_s:g}], the model's clip length in s")
        self.hop_s = self.window_s if hop_s is None else float(hop_s)
        self.max_windows = max_windows
        self.batch_windows = batch_windows
        self.dim = int(self.model.audio_projection.linear2.out_features)
        self._weights_sha256 = weights_sha256(path)
        self._weights_format = weights_format
        self._config_id = config_id

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of clips: float32 (n, window_len) at `sample_rate` -> float32 (n, dim)."""
        features = self.feature_extractor(list(windows), sampling_rate=self.sample_rate, return_tensors="np")
        mel = torch.from_numpy(np.asarray(features["input_features"], dtype=np.float32)).to(self.device, self.dtype)
        is_longer = torch.zeros((len(windows), 1), dtype=torch.bool, device=self.device)
        pooled = self.model.audio_model(input_features=mel, is_longer=is_longer).pooler_output
        return F.normalize(self.model.audio_projection(pooled).float(), dim=-1).cpu().numpy()

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 for a batch of mono 48 kHz tracks: mean of each track's normalised window vectors."""
        if len(waveforms) == 0:
            return np.zeros((0, self.dim), np.float32)
        per_track = [frame_windows(w, self.sample_rate, self.window_s, self.hop_s, self.max_windows, pad="repeat")
                     for w in waveforms]
        flat = np.concatenate(per_track)
        vectors = np.concatenate([self.embed_windows(flat[start : start + self.batch_windows])
                                  for start in range(0, len(flat), self.batch_windows)])
        bounds = np.cumsum([0] + [len(windows) for windows in per_track])
        return np.stack([vectors[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]).astype(np.float32)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings in the audio space: n strings -> float32 (n, dim)."""
        if self.tokenizer is None:
            raise RuntimeError(
                "clap: no tokenizer files (tokenizer.json or vocab.json) beside the CLAP config; copy the model's "
                "tokenizer files into the weights folder (or the `config` folder for a LAION checkpoint)"
            )
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=TEXT_MAX_TOKENS,
                                return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                       attention_mask=tokens["attention_mask"]).pooler_output
        return F.normalize(self.model.text_projection(pooled).float(), dim=-1).cpu().numpy()

    def provenance(self) -> dict[str, str]:
        cap = "all" if self.max_windows is None else f"at most {self.max_windows} spread evenly"
        return {
            "weights_sha256": self._weights_sha256,
            "weights_format": self._weights_format,
            "config": self._config_id,
            "dtype": str(self.dtype).removeprefix("torch."),
            "window_policy": f"{self.window_s:g} s windows every {self.hop_s:g} s, {cap}; shorter tracks "
                             f"repeat-padded; {self.sample_rate} Hz",
            "pooling": "mean of L2-normalised window embeddings",
        }
