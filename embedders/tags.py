"""Tag probabilities of a tagging backbone (MusiCNN: 50 MagnaTagATune or last.fm tags) as tables.

`TagView` presents a tagger (an embedder with `tags(waveforms) -> (n, n_tags)` and `tag_names`) as an
Embedder of dim n_tags, so that the runner's decoding, batching, per-track failures and per-batch incremental
tables serve tags exactly as they serve embeddings; `EmbeddingWithTags` gives both from one forward, so the
embedding step writes the tag tables too and the tags asset finds them up to date. `top_tags` and
`tags_by_label` turn the stored probabilities into readable tables.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from catalog.io import ItemVectors
from embedders.base import Embedder


def is_tagger(embedder: Embedder) -> bool:
    """Whether `embedder` also predicts tag probabilities (has `tags` and `tag_names`)."""
    return callable(getattr(embedder, "tags", None)) and bool(getattr(embedder, "tag_names", None))


class TagView:
    """A tagger seen as an Embedder whose vector is the track's tag probabilities, shape (n, len(tag_names)),
    float32 in [0, 1]. Name `<backbone>_tags`; same sample rate and version as the tagger."""

    def __init__(self, tagger: Embedder) -> None:
        if not is_tagger(tagger):
            raise TypeError(f"{tagger.name}: not a tagging backbone (needs `tags(waveforms)` and `tag_names`)")
        self.tagger = tagger
        self.name = f"{tagger.name}_tags"
        self.sample_rate = tagger.sample_rate
        self.tag_names: list[str] = list(tagger.tag_names)
        self.dim = len(self.tag_names)
        self.version = tagger.version

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return self.tagger.tags(waveforms)

    def provenance(self) -> dict[str, str]:
        return {**self.tagger.provenance(), "pooling": "mean over patches of the tag probabilities",
                "tag_names": ",".join(self.tag_names)}


class EmbeddingWithTags:
    """A tagger seen as an Embedder whose vector is its embedding followed by its tag probabilities, shape
    (n, dim + len(tag_names)), from one forward when the tagger has `embed_and_tags(waveforms)` (else `embed`
    and `tags`, two). The runner embeds a batch through it once and writes each part as its own table
    (`embedders.runner.embed_batch(..., tags_dir=)`)."""

    def __init__(self, tagger: Embedder) -> None:
        self.embedding, self.tagging = tagger, TagView(tagger)
        self.name = f"{tagger.name}+tags"
        self.sample_rate = tagger.sample_rate
        self.dim = tagger.dim + self.tagging.dim
        self.version = tagger.version

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        fused = getattr(self.embedding, "embed_and_tags", None)
        if fused is not None:
            return fused(waveforms)
        return np.hstack([self.embedding.embed(waveforms), self.embedding.tags(waveforms)])

    def provenance(self) -> dict[str, str]:
        return self.embedding.provenance()


def top_tags(probabilities: ItemVectors, tag_names: Sequence[str], k: int = 5) -> pl.DataFrame:
    """Per track: track_id str, top_tags list<str> (the `k` most probable, best first), top_probabilities
    list<f32> (their probabilities)."""
    if probabilities.dim != len(tag_names):
        raise ValueError(f"top_tags: {probabilities.dim} probabilities per track but {len(tag_names)} tag names")
    order = np.argsort(-probabilities.matrix, axis=1, kind="stable")[:, :k]
    names = np.asarray(tag_names)
    return pl.DataFrame({
        "track_id": probabilities.ids,
        "top_tags": [names[row].tolist() for row in order],
        "top_probabilities": [probabilities.matrix[i, row].astype(np.float32).tolist() for i, row in enumerate(order)],
    }, schema={"track_id": pl.String, "top_tags": pl.List(pl.String), "top_probabilities": pl.List(pl.Float32)})


def tags_by_label(probabilities: ItemVectors, tag_names: Sequence[str], labels: dict[str, str],
                  k: int = 3) -> pl.DataFrame:
    """Mean tag probabilities over the tracks of each label (e.g. track_id -> instrument), top `k` per label:
    label str, tracks u32, top_tags list<str>, top_probabilities list<f32>; labels sorted by name. Tracks
    without a label are ignored."""
    rows = []
    index = {track: i for i, track in enumerate(probabilities.ids)}
    for label in sorted(set(labels.values())):
        members = [index[t] for t, value in labels.items() if value == label and t in index]
        if not members:
            continue
        mean = probabilities.matrix[members].mean(axis=0)
        best = np.argsort(-mean, kind="stable")[:k]
        rows.append({"label": label, "tracks": len(members), "top_tags": [tag_names[i] for i in best],
                     "top_probabilities": [float(mean[i]) for i in best]})
    return pl.DataFrame(rows, schema={"label": pl.String, "tracks": pl.UInt32, "top_tags": pl.List(pl.String),
                                      "top_probabilities": pl.List(pl.Float32)})
