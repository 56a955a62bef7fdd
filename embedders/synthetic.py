"""The `synthetic` backbone: vectors of a synthetic scale catalog (`catalog.scale`) that carry its planted
taste signal, read off the track id (no audio): cluster centroid × `cluster_weight` + artist offset ×
`artist_weight` + track noise × `noise`, each a seeded N(0, 1) vector of `dim` numbers. Its shuffled twin is
the `random` backbone (same dims, no signal)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from catalog.scale import parse_track_id
from embedders.base import Backbone, register_backbone
from embedders.random_baseline import seeded_gaussian


@register_backbone
class SyntheticEmbedder(Backbone):
    name = "synthetic"
    sample_rate = 16000
    version = "1"
    needs_audio = False

    @dataclass(frozen=True)
    class Options:
        dim: int = 200
        seed: int = 0
        cluster_weight: float = 1.0
        artist_weight: float = 0.7
        noise: float = 0.7

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.dim = self.options.dim

    def embed_ids(self, track_ids: Sequence[str]) -> tuple[np.ndarray, dict[str, str]]:
        """(vectors (n, dim) float32 in id order, {id: reason} for ids that are not synthetic track ids)."""
        o = self.options
        rows = np.zeros((len(track_ids), self.dim), np.float32)
        missing: dict[str, str] = {}
        centroids: dict[int, np.ndarray] = {}
        for row, track in enumerate(track_ids):
            try:
                cluster, artist, _ = parse_track_id(track)
            except ValueError as error:
                missing[track] = str(error)
                continue
            if cluster not in centroids:
                centroids[cluster] = seeded_gaussian(f"{o.seed}:cluster:{cluster}", self.dim)
            rows[row] = (o.cluster_weight * centroids[cluster] + o.artist_weight * seeded_gaussian(
                f"{o.seed}:artist:{artist}", self.dim) + o.noise * seeded_gaussian(f"{o.seed}:track:{track}", self.dim))
        return rows, missing

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        raise TypeError("the synthetic backbone embeds track ids, not audio: call embed_ids")

    def provenance(self) -> dict[str, str]:
        o = self.options
        return {"weights_sha256": "none", "policy": f"planted: cluster {o.cluster_weight} + artist "
                f"{o.artist_weight} + noise {o.noise}, seed {o.seed}"}
