"""Artist similarity graphs: the OLGA adapter, the converter from the contract tables, and node features.

An `ArtistGraph` holds each undirected similarity edge ONCE, as a column `(i, j)` with `i < j` of an int64
array of shape (2, E); code that passes messages symmetrises it (see `evaluation.artist_similarity`). The node
split is three disjoint int64 index arrays (train / val / test) covering every artist.

OLGA folder layout (the published release): `artist_connections.npz` (scipy CSR bool matrix, n x n, upper
triangle), `train_mask.npz` / `val_mask.npz` / `test_mask.npz` (CSR 1 x n vectors whose stored indices are the
split's artists), optional `acousticbrainz.npy` / `clap.npy` (float, one row per artist, row i = artist i).
OLGA has no artist id strings: artist i is named `str(i)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from catalog.io import ItemVectors

SPLITS = ("train", "val", "test")
OLGA_FEATURE_FILES = ("acousticbrainz", "clap")
RANDOM_FEATURE_DIM = 256  # the published code does not fix it; 256 = the model's hidden width


@dataclass(frozen=True)
class ArtistGraph:
    """Artists, their undirected similarity edges and a node split.

    artist_ids: n artist id strings; node i is `artist_ids[i]`.
    edges: int64 (2, E), each undirected edge once with edges[0] < edges[1].
    train / val / test: int64 node indices, disjoint, together covering 0..n-1.
    features: name -> float32 (n, d) node feature matrices (may be empty).
    """

    artist_ids: list[str]
    edges: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.num_nodes
        if self.edges.ndim != 2 or self.edges.shape[0] != 2:
            raise ValueError(f"edges must have shape (2, E), got {self.edges.shape}")
        if self.edges.size and (self.edges.min() < 0 or self.edges.max() >= n):
            raise ValueError(f"edge endpoints must lie in [0, {n}), got [{self.edges.min()}, {self.edges.max()}]")
        if np.any(self.edges[0] >= self.edges[1]):
            raise ValueError("edges must be stored once per undirected pair with src < dst (no self-loops)")
        together = np.concatenate([self.train, self.val, self.test])
        if len(together) != n or not np.array_equal(np.sort(together), np.arange(n)):
            raise ValueError(f"train/val/test must partition the {n} nodes "
                             f"(sizes {len(self.train)}/{len(self.val)}/{len(self.test)})")
        for name, matrix in self.features.items():
            if matrix.ndim != 2 or matrix.shape[0] != n:
                raise ValueError(f"feature {name!r} has shape {matrix.shape}, expected ({n}, d)")

    @property
    def num_nodes(self) -> int:
        return len(self.artist_ids)

    def split(self, name: str) -> np.ndarray:
        """The node indices of split `name` (train / val / test)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)


def _canonical_edges(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Unique undirected edges as (2, E) int64 with src < dst, sorted; self-loops raise ValueError."""
    if np.any(src == dst):
        raise ValueError(f"{int(np.sum(src == dst))} self-loop(s) in artist edges (first at node {src[src == dst][0]})")
    pairs = np.stack([np.minimum(src, dst), np.maximum(src, dst)]).astype(np.int64)
    return np.unique(pairs, axis=1) if pairs.size else pairs.reshape(2, 0)


def _mask_indices(path: Path, n: int) -> np.ndarray:
    mask = sp.load_npz(path).tocsr()
    if mask.shape != (1, n):
        raise ValueError(f"{path}: mask of shape {mask.shape}, expected (1, {n})")
    return np.sort(mask.indices[mask.data != 0]).astype(np.int64)


def load_olga(folder: str | Path, features: tuple[str, ...] = OLGA_FEATURE_FILES) -> ArtistGraph:
    """Read an OLGA release folder. Feature files of `features` are loaded when present (missing ones are skipped)."""
    folder = Path(folder)
    connections = folder / "artist_connections.npz"
    if not connections.exists():
        raise FileNotFoundError(f"{folder}: no artist_connections.npz (is this an OLGA folder?)")
    adjacency = sp.load_npz(connections).tocoo()
    n = adjacency.shape[0]
    if adjacency.shape != (n, n):
        raise ValueError(f"{connections}: adjacency of shape {adjacency.shape} is not square")
    keep = adjacency.data != 0
    edges = _canonical_edges(adjacency.row[keep].astype(np.int64), adjacency.col[keep].astype(np.int64))
    splits = {s: _mask_indices(folder / f"{s}_mask.npz", n) for s in SPLITS}
    loaded: dict[str, np.ndarray] = {}
    for name in features:
        path = folder / f"{name}.npy"
        if path.exists():
            loaded[name] = np.load(path).astype(np.float32)
    return ArtistGraph([str(i) for i in range(n)], edges, features=loaded, **splits)


def seeded_node_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Random node split: round(val_fraction*n) val and round(test_fraction*n) test nodes, the rest train."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need val_fraction, test_fraction >= 0 with sum < 1, got {val_fraction}, {test_fraction}")
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_val, n_test = int(round(val_fraction * n)), int(round(test_fraction * n))
    return {"val": np.sort(order[:n_val]), "test": np.sort(order[n_val:n_val + n_test]),
            "train": np.sort(order[n_val + n_test:])}


def graph_from_tables(
    artists: pl.DataFrame,
    artist_edges: pl.DataFrame,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> ArtistGraph:
    """Build an `ArtistGraph` from the `artists` and `artist_edges` contract tables, with a seeded node split
    (OLGA-like 80/10/10 by default). Node order = the `artists` table's order. (a, b) and (b, a) are one edge;
    an edge naming an artist missing from `artists`, or a self-loop, raises ValueError."""
    ids = artists["artist_id"].to_list()
    position = {artist: i for i, artist in enumerate(ids)}
    ends = []
    for column in ("src", "dst"):
        values = artist_edges[column].to_list()
        unknown = [v for v in values if v not in position]
        if unknown:
            raise ValueError(f"artist_edges.{column} names {len(unknown)} unknown artist(s), first {unknown[0]!r}")
        ends.append(np.array([position[v] for v in values], dtype=np.int64))
    split = seeded_node_split(len(ids), val_fraction, test_fraction, seed)
    return ArtistGraph(ids, _canonical_edges(*ends), **split)


def random_features(n: int, dim: int = RANDOM_FEATURE_DIM, seed: int = 0) -> np.ndarray:
    """The random baseline: seeded standard Gaussian node features, float32 (n, dim)."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def artist_features_from_tracks(
    artist_ids: list[str], tracks: pl.DataFrame, vectors: ItemVectors, pooling: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Pool track embeddings per artist.

    tracks: a `tracks` table (track_id -> artist_id); tracks without a vector are ignored.
    pooling: "mean" or "max" over the artist's track vectors.
    Returns (features float32 (n, dim), has_tracks bool (n,)). An artist with no embedded track gets a row of
    zeros and has_tracks False: callers decide whether to drop, flag or accept such artists.
    """
    if pooling not in ("mean", "max"):
        raise ValueError(f"unknown pooling {pooling!r}; expected 'mean' or 'max'")
    row_of = vectors.index_of()
    node_of = {artist: i for i, artist in enumerate(artist_ids)}
    pairs = [(node_of[a], row_of[t]) for t, a in zip(tracks["track_id"].to_list(), tracks["artist_id"].to_list())
             if t in row_of and a in node_of]
    features = np.zeros((len(artist_ids), vectors.dim), np.float32)
    has_tracks = np.zeros(len(artist_ids), bool)
    if not pairs:
        return features, has_tracks
    nodes, rows = (np.array(x, dtype=np.int64) for x in zip(*pairs))
    has_tracks[nodes] = True
    if pooling == "mean":
        np.add.at(features, nodes, vectors.matrix[rows])
        features[has_tracks] /= np.bincount(nodes, minlength=len(artist_ids))[has_tracks, None]
    else:
        features[has_tracks] = -np.inf
        np.maximum.at(features, nodes, vectors.matrix[rows])
    return features, has_tracks


def resolve_features(graph: ArtistGraph, name: str, seed: int = 0) -> np.ndarray:
    """Node features by name: "random" (seeded Gaussian, `RANDOM_FEATURE_DIM`), a key of `graph.features`, or a
    "+"-joined concatenation of those (e.g. "acousticbrainz+clap"). Returns float32 (n, total dim)."""
    blocks = []
    for part in name.split("+"):
        if part == "random":
            blocks.append(random_features(graph.num_nodes, seed=seed))
        elif part in graph.features:
            blocks.append(graph.features[part].astype(np.float32))
        else:
            raise KeyError(f"unknown node features {part!r}; available: random, {sorted(graph.features)}")
    return np.concatenate(blocks, axis=1)
