"""Embed one audio file with a release's similar-tracks backbone (`musicrec similar --audio`, the upload
endpoint): decoded to mono at the backbone's rate, at most `MAX_SECONDS` of it, so memory stays bounded."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_SECONDS = 600.0


def create_backbone(manifest: dict):
    """The backbone named by a release manifest (`similar_backbone`: name, options and the module that
    registers it, imported alone so that a query loads only its backbone's libraries); LookupError when the
    release has none that reads audio."""
    from embedders.base import BACKBONES

    spec = manifest.get("similar_backbone")
    if not spec:
        raise LookupError("this release has no content backbone to embed audio with (serve.similar)")
    cls = BACKBONES.get(spec["name"], module=spec.get("module"))
    if not cls.needs_audio:
        raise LookupError(f"the release's similar-tracks table comes from `{spec['name']}`, which reads no audio")
    return cls(**spec["options"])


def embed_with(backbone, path: str | Path) -> np.ndarray:
    """The backbone's vector of one audio file, shape (dim,) float32. ValueError (AudioDecodeError) for a
    file that does not decode, naming the file."""
    from embedders.audio import load_mono

    wave = load_mono(Path(path), backbone.sample_rate, MAX_SECONDS)
    vector = np.asarray(backbone.embed([wave]), np.float32)[0]
    if not np.isfinite(vector).all():
        raise ValueError(f"{path}: the backbone gave a non-finite vector")
    return vector


def embed_file(manifest: dict, path: str | Path) -> np.ndarray:
    """`embed_with` the backbone of `manifest`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    return embed_with(create_backbone(manifest), path)
