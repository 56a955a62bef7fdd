"""Natural-language search over the catalog: a faiss `IndexFlatIP` over the L2-normalised bi-encoder
embeddings of each track's descriptor (its tags joined by ", " then its caption), so inner product = cosine.

    index = TextSearchIndex.build(tracks, model_folder=None, artists=artists)   # None: bundled model
    index.save("storage/search")
    index = TextSearchIndex.load("storage/search")
    index = TextSearchIndex.load("storage/search", lean=True)  # queries via LeanQueryEncoder when it supports the model
    index.search("gentle keys at a slow pace", k=10)  # [(track_id, cosine score), ...], best first

A saved index is a folder: `index.faiss`, `tracks.parquet` (track_id, title, artist, tags: what a result
shows) and `config.json` (model folder, or null for the bundled model; dim; number of tracks).

Imports stay light (faiss, polars): the sentence-transformers encoder, the bundled model's location and the
table writers are imported where used, so a `lean` load never imports torch, sentence-transformers or transformers
(the bundled model's location comes from the torch-free `recommenders.bundled_model`).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import polars as pl

if TYPE_CHECKING:
    from recommenders.query_encoder import LeanQueryEncoder
    from recommenders.text_biencoder import TextBiEncoder

INDEX_FILE, TRACKS_FILE, CONFIG_FILE = "index.faiss", "tracks.parquet", "config.json"


def track_descriptor(tags: list[str] | None, caption: str | None) -> str:
    """The text a track is searched by: "tag1, tag2. Caption." (either part may be missing)."""
    from evaluation.text_retrieval import DESCRIPTOR_SEPARATOR

    parts = [DESCRIPTOR_SEPARATOR.join(t for t in (tags or []) if t)]
    parts.append((caption or "").strip())
    return ". ".join(p for p in parts if p)


class TextSearchIndex:
    """Tracks searchable by free text: `search(text, k)` -> [(track_id, cosine score)], best first."""

    def __init__(self, encoder: TextBiEncoder | LeanQueryEncoder, index: faiss.Index, tracks: pl.DataFrame,
                 model_folder: Path | None) -> None:
        if index.ntotal != tracks.height:
            raise ValueError(f"index holds {index.ntotal} vectors but the track table {tracks.height} rows")
        self.encoder = encoder
        self.index = index
        self.tracks = tracks  # track_id, title, artist, tags, in index row order
        self.model_folder = model_folder
        self._ids = tracks["track_id"].to_list()

    @classmethod
    def build(
        cls,
        tracks: pl.DataFrame,
        model_folder: str | Path | None = None,
        artists: pl.DataFrame | None = None,
        encoder: TextBiEncoder | None = None,
    ) -> "TextSearchIndex":
        """Embed every track of a `tracks` table (track_id, tags, caption; title and artist_id shown when
        present). `artists` (artist_id, name) turns artist ids into names. `encoder` reuses a loaded model,
        else the one in `model_folder` (None: bundled all-MiniLM-L6-v2) is loaded."""
        from recommenders.text_biencoder import TextBiEncoder

        if "track_id" not in tracks.columns or tracks.height == 0:
            raise ValueError("TextSearchIndex.build: needs a non-empty table with a track_id column")
        folder = Path(model_folder) if model_folder is not None else None
        encoder = encoder or TextBiEncoder.load(folder)
        tags = tracks["tags"].to_list() if "tags" in tracks.columns else [[]] * tracks.height
        captions = tracks["caption"].to_list() if "caption" in tracks.columns else [None] * tracks.height
        vectors = encoder.encode([track_descriptor(t, c) for t, c in zip(tags, captions)])
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(encoder, index, display_table(tracks, artists), folder)

    def search(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        """The `k` tracks whose descriptors are most similar to `text`: (track_id, cosine in [-1, 1])."""
        return self.search_many([text], k)[0]

    def search_many(self, texts: list[str], k: int = 10) -> list[list[tuple[str, float]]]:
        """`search` for several queries at once (one encoder batch, one index search): a list per query."""
        if any(not text.strip() for text in texts):
            raise ValueError("search: empty query")
        if k < 1:
            raise ValueError(f"search: k must be >= 1, got {k}")
        scores, rows = self.index.search(self.encoder.encode(texts), min(k, self.index.ntotal))
        return [[(self._ids[r], float(s)) for r, s in zip(row, score) if r >= 0] for row, score in zip(rows, scores)]

    def save(self, folder: str | Path) -> Path:
        """Write `index.faiss`, `tracks.parquet`, `config.json` into `folder` (each atomically)."""
        from catalog.io import atomic_path, write_json, write_parquet

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        write_parquet(self.tracks.to_arrow(), folder / TRACKS_FILE)
        write_json({"model_folder": str(self.model_folder) if self.model_folder else None,
                    "dim": int(self.index.d), "n_tracks": int(self.index.ntotal)}, folder / CONFIG_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None, lean: bool = False,
             precision: str = "float32") -> "TextSearchIndex":
        """Inverse of `save`; loads the encoder the index was built with. `lean`: encode queries with
        `LeanQueryEncoder` (numpy on the CPU; same vectors, without importing torch) in `precision` (one of its
        PRECISIONS) when it supports the model folder, else fall back to `TextBiEncoder` (float32)."""
        folder = Path(folder)
        missing = [name for name in (INDEX_FILE, TRACKS_FILE, CONFIG_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: not a search index (missing {', '.join(missing)})")
        config = json.loads((folder / CONFIG_FILE).read_text())
        model_folder = Path(config["model_folder"]) if config["model_folder"] else None
        encoder = load_query_encoder(model_folder, device, precision) if lean else None
        if encoder is None:
            from recommenders.text_biencoder import TextBiEncoder

            encoder = TextBiEncoder.load(model_folder, device=device)
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.d != encoder.dim:
            raise ValueError(f"{folder}: index dim {index.d} differs from the encoder's {encoder.dim}")
        return cls(encoder, index, pl.read_parquet(folder / TRACKS_FILE), model_folder)


def load_query_encoder(model_folder: Path | None, device: str | None = None,
                       precision: str = "float32") -> LeanQueryEncoder | None:
    """A `LeanQueryEncoder` in `precision` for `model_folder` (None: the bundled model), or None when it does not
    support that folder or a non-CPU `device` is asked for. The last two loaded are kept and shared while their
    weights file is unchanged, so that a server loading each new release's index reloads no model."""
    from recommenders.query_encoder import WEIGHTS_FILE, LeanQueryEncoder

    if device not in (None, "cpu"):
        return None
    if model_folder is None:
        from recommenders.bundled_model import bundled_model_path

        model_folder = bundled_model_path()
    if not LeanQueryEncoder.supports(model_folder):
        return None
    weights = (Path(model_folder) / WEIGHTS_FILE).stat()
    return _shared_lean_encoder(str(Path(model_folder).resolve()), weights.st_mtime_ns, weights.st_size, precision)


@functools.lru_cache(maxsize=2)
def _shared_lean_encoder(folder: str, mtime_ns: int, size: int, precision: str) -> LeanQueryEncoder:
    """`LeanQueryEncoder.load(folder, precision=precision)`, cached per weights-file version (mtime_ns, size)."""
    from recommenders.query_encoder import LeanQueryEncoder

    return LeanQueryEncoder.load(folder, precision=precision)


def display_table(tracks: pl.DataFrame, artists: pl.DataFrame | None) -> pl.DataFrame:
    """track_id, title, artist, tags: what a search result shows (missing columns become empty)."""
    def column(name: str, dtype: pl.DataType) -> pl.Series:
        return tracks[name] if name in tracks.columns else pl.Series(name, [None] * tracks.height, dtype)

    table = pl.DataFrame([column("track_id", pl.String), column("title", pl.String),
                          column("artist_id", pl.String), column("tags", pl.List(pl.String))])
    if artists is not None:
        names = artists.select("artist_id", pl.col("name").alias("artist"))
        table = table.join(names, on="artist_id", how="left", maintain_order="left")
        table = table.with_columns(pl.coalesce("artist", "artist_id").alias("artist"))
    else:
        table = table.with_columns(pl.col("artist_id").alias("artist"))
    return table.select("track_id", "title", "artist", "tags")


def build_search_index(
    tracks: pl.DataFrame, model_folder: Path | None, out_folder: Path, artists: pl.DataFrame | None = None
) -> Path:
    """Build the search index of `tracks` with the model in `model_folder` (None: bundled) and save it to
    `out_folder`; returns `out_folder`."""
    return TextSearchIndex.build(tracks, model_folder, artists).save(out_folder)
