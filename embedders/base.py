"""The `Embedder` protocol every audio backbone implements, and the backbone registry.

An embedder receives whole tracks as mono float32 waveforms at its own `sample_rate` and returns one vector
per track: it cuts its own windows (see `embedders.audio.frame_windows`) and pools them. The runner
(`embedders.runner`) does decoding, resampling, batching and failure bookkeeping, so an embedder is only the
model.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from catalog.registry import Configurable, Registry


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


class Backbone(Configurable):
    """Base of the registered backbones. Besides `Configurable`'s name, version, Options and needs_gpu, a
    class declares whether it reads audio (`needs_audio`; False: `embed_ids(track_ids)` instead of `embed`),
    the tag names of a tagging backbone (`tag_names`, known without loading weights), and which options name
    weight files or folders that must exist (`weight_options`, checked by `musicrec check`)."""

    needs_audio: ClassVar[bool] = True
    tag_names: ClassVar[tuple[str, ...]] = ()
    weight_options: ClassVar[tuple[str, ...]] = ()


BACKBONES: Registry[type[Backbone]] = Registry("backbone", "embedders")
register_backbone = BACKBONES.register


def create_embedder(name: str, **options: Any) -> Embedder:
    """Build a registered backbone (this loads its weights); KeyError listing the known names."""
    return BACKBONES.get(name)(**options)
