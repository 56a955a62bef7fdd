"""Serving releases: the tables a platform reads, published as one immutable folder per materialisation and
switched atomically, and the in-memory lookups over one release.

Layout under `<storage>/serving/`:
- `releases/<release>/`: `recommendations.parquet` (user_id, rank, track_id, score: each user's top k),
  `similar_tracks.parquet` (track_id, rank, similar_id, score: each track's k nearest tracks by cosine),
  `tracks.parquet` (track_id, title, artist_id, artist, audio_path, tags), `histories.parquet` (user_id,
  track_id, timestamp), `similar_artists.parquet` (artist_id, rank, similar_id, score: each artist's k most
  similar artists; optional), `artists.parquet` (artist_id, name; optional),
  `vectors.parquet` (the similar-tracks backbone table: track_id, embedding), `search/` (the text search index
  as it was at publishing: its files hard-linked, or copied across file systems; optional),
  `manifest.json` (experiment, recommender, backbone, similar table and its backbone class and options, k,
  audio root, search index folder, created).
- `CURRENT`: the name of the live release, replaced atomically after the release folder is complete, so a
  reader sees either the old release or the new one, never a half-written one. Older releases beyond the last
  `KEEP_RELEASES` are removed.
"""
from __future__ import annotations

import difflib
import functools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from catalog.io import (
    ItemVectors,
    atomic_path,
    l2_normalize,
    read_embeddings,
    write_embeddings,
    write_json,
    write_parquet,
)

SERVING = "serving"
CURRENT = "CURRENT"
KEEP_RELEASES = 3
TABLES = ("recommendations", "similar_tracks", "tracks", "histories")
OPTIONAL_TABLES = ("similar_artists", "artists")


class UnknownId(KeyError):
    """An id the release does not know; `closest` holds the nearest known ids by spelling."""

    def __init__(self, kind: str, value: str, closest: list[str]) -> None:
        self.kind, self.value, self.closest = kind, value, closest
        hint = f"; closest known: {', '.join(closest)}" if closest else ""
        super().__init__(f"unknown {kind} {value!r}{hint}")

    def __str__(self) -> str:
        return self.args[0]


def serving_root(storage: str | Path) -> Path:
    return Path(storage) / SERVING


def current_release(storage: str | Path) -> Path | None:
    """The folder of the live release, or None before the first one."""
    pointer = serving_root(storage) / CURRENT
    if not pointer.is_file():
        return None
    return serving_root(storage) / "releases" / pointer.read_text().strip()


def publish_release(storage: str | Path, tables: dict[str, pl.DataFrame], vectors: ItemVectors | None,
                    manifest: dict, search_index: str | Path | None = None) -> Path:
    """Write a new release folder (the `TABLES`, those of `OPTIONAL_TABLES` given, vectors, a snapshot of the
    text search index folder `search_index`, manifest), then point CURRENT at it; returns the folder. The
    snapshot keeps the release whole when the search index is rebuilt in place later (the manifest's
    "search_index" names the snapshot)."""
    created = datetime.now(UTC)
    name = created.strftime("%Y%m%dT%H%M%S%fZ")
    folder = serving_root(storage) / "releases" / name
    for table_name in TABLES + tuple(t for t in OPTIONAL_TABLES if t in tables):
        write_parquet(tables[table_name].to_arrow(), folder / f"{table_name}.parquet")
    if vectors is not None:
        write_embeddings(vectors, folder / "vectors.parquet", {})
    snapshot = _snapshot_files(Path(search_index), folder / "search") if search_index is not None else None
    write_json({**manifest, "search_index": str(snapshot) if snapshot else None, "release": name,
                "created": created.isoformat()}, folder / "manifest.json")
    with atomic_path(serving_root(storage) / CURRENT) as tmp:
        tmp.write_text(name)
    releases = sorted(p for p in (serving_root(storage) / "releases").iterdir() if p.is_dir())
    for old in releases[:-KEEP_RELEASES]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _snapshot_files(source: Path, target: Path) -> Path:
    """The files directly in `source` hard-linked into a new folder `target` (copied where linking fails, e.g.
    across file systems). Writers replace files atomically (a new inode), so a link keeps the old content."""
    target.mkdir(parents=True)
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        try:
            (target / path.name).hardlink_to(path)
        except OSError:
            shutil.copy2(path, target / path.name)
    return target


@dataclass(frozen=True)
class Hit:
    """One result: a track, its score and what a person needs to recognise it."""

    track_id: str
    score: float
    title: str
    artist: str
    audio_path: str
    tags: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"track_id": self.track_id, "score": round(self.score, 6), "title": self.title,
                "artist": self.artist, "audio_path": self.audio_path, "tags": list(self.tags)}


class FeatureMissing(LookupError):
    """The release lacks what a lookup needs (search index, audio backbone, track vectors, audio root, similar
    artists); the HTTP API answers 404."""


@dataclass(frozen=True)
class ArtistHit:
    """One similar artist: its id, name and cosine score."""

    artist_id: str
    name: str
    score: float

    def as_dict(self) -> dict:
        return {"artist_id": self.artist_id, "name": self.name, "score": round(self.score, 6)}


class _Lists:
    """Ranked lists keyed by id (a user or a track), held as flat arrays: key -> rows [start, end)."""

    def __init__(self, table: pl.DataFrame, key: str, item: str) -> None:
        table = table.sort([key, "rank"])
        keys = table[key].to_numpy()
        self.items = table[item].to_numpy()
        self.scores = table["score"].to_numpy().astype(np.float32)
        bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True]) if len(keys) else np.array([0])
        self.rows = {keys[bounds[i]]: (int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1)}

    def get(self, key: str, k: int) -> list[tuple[str, float]] | None:
        span = self.rows.get(key)
        if span is None:
            return None
        start, end = span
        end = min(end, start + k)
        return list(zip(self.items[start:end].tolist(), self.scores[start:end].tolist()))


class ServingRelease:
    """One release in memory: every lookup the CLI and the HTTP API answer. Ids are validated: an unknown
    one raises `UnknownId` with the closest known ids. Each table is read on first use, so a one-off command
    reads only what it answers from; `load` reads them all (the server does, before it swaps to a release)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest: dict = json.loads((folder / "manifest.json").read_text())
        self._index = None  # a faiss IndexFlatIP over the normalised `vectors`, built on first use

    def load(self) -> "ServingRelease":
        """Read every table now (each cached property of the class); returns self."""
        for name, member in vars(type(self)).items():
            if isinstance(member, functools.cached_property):
                getattr(self, name)
        return self

    @functools.cached_property
    def track_rows(self) -> dict[str, dict]:
        """track_id -> its row of tracks.parquet."""
        tracks = pl.read_parquet(self.folder / "tracks.parquet")
        return {row["track_id"]: row for row in tracks.iter_rows(named=True)}

    @functools.cached_property
    def recommendations(self) -> _Lists:
        return _Lists(pl.read_parquet(self.folder / "recommendations.parquet"), "user_id", "track_id")

    @functools.cached_property
    def similar_tracks(self) -> _Lists:
        return _Lists(pl.read_parquet(self.folder / "similar_tracks.parquet"), "track_id", "similar_id")

    @functools.cached_property
    def histories(self) -> dict[str, list[str]]:
        """user_id -> the track ids of their plays, oldest first."""
        histories = pl.read_parquet(self.folder / "histories.parquet").sort(["user_id", "timestamp", "track_id"])
        grouped = histories.group_by("user_id", maintain_order=True).agg(pl.col("track_id"))
        return dict(zip(grouped["user_id"].to_list(), grouped["track_id"].to_list()))

    @functools.cached_property
    def user_ids(self) -> list[str]:
        return sorted(self.histories)

    @functools.cached_property
    def artist_names(self) -> dict[str, str]:
        artists = self.folder / "artists.parquet"  # releases published before similar artists have neither table
        return dict(pl.read_parquet(artists).select("artist_id", "name").iter_rows()) if artists.exists() else {}

    @functools.cached_property
    def similar_artist_lists(self) -> _Lists | None:
        similar_artists = self.folder / "similar_artists.parquet"
        return _Lists(pl.read_parquet(similar_artists), "artist_id", "similar_id") if similar_artists.exists() else None

    @functools.cached_property
    def vectors(self) -> ItemVectors | None:
        """The similar-tracks backbone's vectors, or None when the release has none."""
        vectors = self.folder / "vectors.parquet"
        return read_embeddings(vectors) if vectors.exists() else None

    @property
    def name(self) -> str:
        return self.manifest["release"]

    def hits(self, pairs: Sequence[tuple[str, float]]) -> list[Hit]:
        """Results with titles, artists, audio paths and tags."""
        out = []
        for track_id, score in pairs:
            row = self.track_rows.get(track_id, {})
            out.append(Hit(track_id, float(score), row.get("title") or track_id, row.get("artist") or "",
                           row.get("audio_path") or "", tuple(row.get("tags") or ())))
        return out

    def _unknown(self, kind: str, value: str, known: Sequence[str]) -> UnknownId:
        return UnknownId(kind, value, difflib.get_close_matches(value, known, n=3, cutoff=0.5))

    def recommend(self, user_id: str, k: int) -> list[Hit]:
        """The user's top `k` (at most the release's k)."""
        pairs = self.recommendations.get(user_id, k)
        if pairs is None:
            raise self._unknown("user", user_id, self.user_ids)
        return self.hits(pairs)

    def similar(self, track_id: str, k: int) -> list[Hit]:
        """The `k` tracks most similar to a catalog track."""
        pairs = self.similar_tracks.get(track_id, k)
        if pairs is None:
            raise self._unknown("track", track_id, list(self.track_rows))
        return self.hits(pairs)

    def similar_artists(self, artist_id: str, k: int) -> list[ArtistHit]:
        """The `k` artists most similar to an artist (GraphSAGE over the artist graph)."""
        if not self.similar_artist_lists or not self.similar_artist_lists.rows:
            raise FeatureMissing(f"release {self.name} has no similar artists (the experiment runs no artist study)")
        pairs = self.similar_artist_lists.get(artist_id, k)
        if pairs is None:
            raise self._unknown("artist", artist_id, list(self.artist_names))
        return [ArtistHit(other, self.artist_names.get(other) or other, float(score)) for other, score in pairs]

    def similar_to_vector(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The `k` catalog tracks nearest (cosine) to a vector of the similar-tracks backbone, shape (dim,)."""
        if self.vectors is None:
            raise LookupError("this release has no track vectors (no content backbone table)")
        if self._index is None:  # faiss straight: recommenders.index imports torch, which a one-off query never needs
            import faiss

            self._index = faiss.IndexFlatIP(self.vectors.matrix.shape[1])
            self._index.add(l2_normalize(self.vectors.matrix))
        scores, rows = self._index.search(l2_normalize(np.asarray(vector, np.float32)[None, :]),
                                          min(k, self._index.ntotal))
        return self.hits([(self.vectors.ids[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0])

    def history(self, user_id: str) -> list[Hit]:
        """The user's plays, oldest first (score 0)."""
        if user_id not in self.histories:
            raise self._unknown("user", user_id, self.user_ids)
        return self.hits([(t, 0.0) for t in self.histories[user_id]])

    def users(self, prefix: str = "", limit: int = 50) -> list[str]:
        """Known user ids starting with `prefix`, sorted, at most `limit`."""
        return [u for u in self.user_ids if u.startswith(prefix)][:limit]


def load_current(storage: str | Path) -> ServingRelease:
    """The live release of a storage folder; FileNotFoundError telling how to make one."""
    folder = current_release(storage)
    if folder is None or not (folder / "manifest.json").exists():
        raise FileNotFoundError(f"{serving_root(storage)}: no serving release yet; run `musicrec run <experiment>` "
                                "(it materialises the serving tables)")
    return ServingRelease(folder)
