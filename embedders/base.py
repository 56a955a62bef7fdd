"""The `Embedder` protocol every audio backbone implements, and the backbone registry.

An embedder receives whole tracks as mono float32 waveforms at its own `sample_rate` and returns one vector
per track: it cuts its own windows (see `embedders.audio.frame_windows`) and pools them. The runner
(`embedders.runner`) does decoding, resampling, batching and failure bookkeeping, so an embedder is only the
model.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    name: str  # backbone name, e.g. "musicnn_mtt"; also the embedding table's name
    sample_rate: int  # Hz of the waveforms `embed` expects
    dim: int  # length of one track vector
    version: str  # bumped whenever outputs change; part of the table metadata and the Dagster code_version

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Embed a batch of tracks: mono float32 waveforms in [-1, 1] -> float32 array of shape (n, dim)."""
        ...

    def provenance(self) -> dict[str, str]:
        """Metadata stored with the table: weights sha256, clip and pooling policy, anything needed to reproduce."""
        ...


EmbedderFactory = Callable[..., Embedder]
BACKBONES: dict[str, EmbedderFactory] = {}


def register_backbone(name: str) -> Callable[[EmbedderFactory], EmbedderFactory]:
    """Class/function decorator adding a backbone factory to `BACKBONES` under `name`."""

    def decorate(factory: EmbedderFactory) -> EmbedderFactory:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        BACKBONES[name] = factory
        return factory

    return decorate


def create_embedder(name: str, **options) -> Embedder:
    """Build a registered backbone; raises KeyError listing the known names."""
    import embedders.registry  # noqa: F401  (imports every backbone module so they register)

    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name](**options)
