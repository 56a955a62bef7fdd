"""The `random` backbone: a seeded Gaussian vector per track id, the floor every real backbone must beat.

It ignores the audio (`needs_audio = False`): the runner calls `embed_ids` and never decodes.
Options: `dim` (length of a vector), `seed`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedders.base import Backbone, register_backbone


def seeded_gaussian(key: str, dim: int) -> np.ndarray:
    """A N(0, 1) vector of `dim` numbers determined by `key` alone (its sha256 seeds the generator)."""
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(dim)


@register_backbone
class RandomEmbedder(Backbone):
    name = "random"
    sample_rate = 16000
    version = "1"
    needs_audio = False

    @dataclass(frozen=True)
    class Options:
        dim: int = 128
        seed: int = 0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.dim = self.options.dim

    def embed_ids(self, track_ids: Sequence[str]) -> tuple[np.ndarray, dict[str, str]]:
        """One N(0, 1) vector per id, shape (n, dim) float32 (the same id and seed always give the same
        vector), and no failures ({})."""
        rows = [seeded_gaussian(f"{self.options.seed}:{track_id}", self.dim) for track_id in track_ids]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim), {}

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        raise TypeError("the random backbone embeds track ids, not audio: call embed_ids")

    def provenance(self) -> dict[str, str]:
        return {"weights_sha256": "none", "policy": f"gaussian per track id, seed {self.options.seed}"}
