"""The embedding runner: decode tracks in a background thread while the model embeds the previous batch,
record per-track failures without sinking the batch, and write one embedding table per catalog batch.

A catalog batch's table is skipped when its stored fingerprint (the batch's track ids and audio hashes, the
backbone's name, version and provenance) matches: re-running with unchanged inputs and code embeds nothing,
and a new batch touches only itself.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from catalog.io import ItemVectors, read_embeddings, read_metadata, write_embeddings, write_table
from catalog.schemas import FAILURES
from embedders.audio import AudioDecodeError, duration_seconds, load_mono, mono_chunks
from embedders.base import Embedder
from embedders.tags import EmbeddingWithTags

log = logging.getLogger(__name__)
CODE_VERSION = "1"  # of this runner's decoding / pooling policy


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: ItemVectors
    failures: pl.DataFrame  # `failures` contract
    audio_seconds: float
    wall_seconds: float


def _failure(track_id: str, stage: str, error: str) -> dict:
    return {"track_id": track_id, "stage": stage, "error": error,
            "at": datetime.now(UTC).replace(tzinfo=None)}


@dataclass(frozen=True)
class LongTracks:
    """How tracks longer than `threshold_s` are embedded, so that memory does not grow with a track's length:
    decoded `chunk_s` at a time, every chunk embedded as a track of its own, and the track's vector the mean of
    its chunk vectors weighted by their length; `max_chunks` (None: all) keeps that many chunks spread evenly."""

    threshold_s: float = 600.0
    chunk_s: float = 60.0
    max_chunks: int | None = None

    def describe(self) -> str:
        spread = "all chunks" if self.max_chunks is None else f"{self.max_chunks} chunks spread evenly"
        return (f"tracks over {self.threshold_s:g} s: {self.chunk_s:g} s chunks ({spread}), "
                "length-weighted mean of the chunk vectors")


def _decode_batch(
    embedder: Embedder, rows: list[dict], catalog_root: Path, max_seconds: float | None, long: LongTracks
) -> tuple[list[str], list[np.ndarray], list[dict], list[tuple[str, Path]]]:
    """(ids, waveforms, failures, long tracks left for `_embed_long`) of one batch."""
    ids, waves, failures, longs = [], [], [], []
    for row in rows:
        path = catalog_root / row["audio_path"]
        try:
            seconds = duration_seconds(path)
            if seconds > long.threshold_s and (max_seconds is None or max_seconds > long.threshold_s):
                longs.append((row["track_id"], path))
                continue
            waves.append(load_mono(path, embedder.sample_rate, max_seconds))
            ids.append(row["track_id"])
        except AudioDecodeError as exc:
            failures.append(_failure(row["track_id"], "decode", str(exc)))
    return ids, waves, failures, longs


def _embed_long(embedder: Embedder, track_id: str, path: Path, long: LongTracks
                ) -> tuple[np.ndarray | None, float, dict | None]:
    """(vector or None, audio seconds, failure or None) of one long track, chunk by chunk (`LongTracks`)."""
    total, seconds = np.zeros(embedder.dim, np.float64), 0.0
    try:
        for chunk in mono_chunks(path, embedder.sample_rate, long.chunk_s, long.max_chunks):
            vector = np.asarray(embedder.embed([chunk]), np.float32)[0]
            total += vector * chunk.size
            seconds += chunk.size / embedder.sample_rate
    except AudioDecodeError as exc:
        return None, seconds, _failure(track_id, "decode", str(exc))
    except Exception as exc:  # noqa: BLE001 — a model error must not sink the other tracks
        return None, seconds, _failure(track_id, "embed", f"{type(exc).__name__}: {exc}")
    vector = (total / max(seconds * embedder.sample_rate, 1)).astype(np.float32)
    if not np.isfinite(vector).all():
        return None, seconds, _failure(track_id, "embed", "non-finite embedding (NaN or inf)")
    return vector, seconds, None


def _embed_batch(
    embedder: Embedder, ids: list[str], waves: list[np.ndarray]
) -> tuple[list[str], list[np.ndarray], list[dict]]:
    """Embed one batch. If the batch raises, embed track by track so that one bad track fails alone; tracks
    whose vector is not finite are failures too. Returns (kept ids, their vectors, failures)."""
    failures: list[dict] = []
    try:
        groups = [(ids, embedder.embed(waves))]
    except Exception as exc:  # noqa: BLE001 — a model error must not sink the other tracks
        log.warning("%s: batch of %d failed (%s); retrying track by track", embedder.name, len(ids), exc)
        groups = []
        for track_id, wave in zip(ids, waves):
            try:
                groups.append(([track_id], embedder.embed([wave])))
            except Exception as single:  # noqa: BLE001
                failures.append(_failure(track_id, "embed", f"{type(single).__name__}: {single}"))
    kept_ids, vectors = [], []
    for group_ids, matrix in groups:
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.shape != (len(group_ids), embedder.dim):
            raise ValueError(
                f"{embedder.name}: embed returned shape {matrix.shape}, expected ({len(group_ids)}, {embedder.dim})"
            )
        for track_id, vector in zip(group_ids, matrix):
            if np.isfinite(vector).all():
                kept_ids.append(track_id)
                vectors.append(vector)
            else:
                failures.append(_failure(track_id, "embed", "non-finite embedding (NaN or inf)"))
    return kept_ids, vectors, failures


def _failure_table(failures: list[dict]) -> pl.DataFrame:
    if not failures:
        return pl.from_arrow(FAILURES.empty_table())
    return pl.DataFrame(failures).cast({"at": pl.Datetime("us")})


def _embed_ids(embedder: Embedder, ids: list[str], started: float) -> EmbeddingResult:
    """A backbone that reads no audio (`needs_audio = False`): `embed_ids(ids)` gives (vectors, {id: reason}
    for the ids it has no vector for); those, and non-finite vectors, become failures."""
    matrix, missing = embedder.embed_ids(ids) if ids else (np.zeros((0, embedder.dim), np.float32), {})
    failures = [_failure(track_id, "embed", reason) for track_id, reason in missing.items()]
    kept = [row for row, track_id in enumerate(ids) if track_id not in missing]
    finite = [row for row in kept if np.isfinite(matrix[row]).all()]
    failures += [_failure(ids[row], "embed", "non-finite embedding (NaN or inf)") for row in set(kept) - set(finite)]
    return EmbeddingResult(ItemVectors([ids[row] for row in finite], np.asarray(matrix, np.float32)[finite]),
                           _failure_table(failures), 0.0, time.perf_counter() - started)


def _chunks(rows: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def embed_tracks(
    embedder: Embedder,
    tracks: pl.DataFrame,
    catalog_root: str | Path,
    batch_size: int = 16,
    max_seconds: float | None = None,
    progress: Callable[[str], None] = log.info,
    long: LongTracks = LongTracks(),
) -> EmbeddingResult:
    """Embed every track of `tracks` (contract `tracks`; audio paths relative to `catalog_root`).

    Decoding of batch i+1 runs in a background thread while the model embeds batch i. One progress line per
    batch: tracks/s, audio-seconds per wall-second, failures so far. `max_seconds` caps decoded audio per track;
    tracks longer than `long.threshold_s` are embedded chunk by chunk (`LongTracks`).
    """
    started = time.perf_counter()
    rows = tracks.select("track_id", "audio_path").to_dicts()
    if not getattr(embedder, "needs_audio", True):
        return _embed_ids(embedder, [r["track_id"] for r in rows], started)
    root = Path(catalog_root)
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    failures: list[dict] = []
    audio_seconds = 0.0
    batches = list(_chunks(rows, batch_size))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending: Future | None = (pool.submit(_decode_batch, embedder, batches[0], root, max_seconds, long)
                                  if batches else None)
        for number in range(1, len(batches) + 1):
            batch_ids, waves, decode_failures, longs = pending.result()
            pending = (pool.submit(_decode_batch, embedder, batches[number], root, max_seconds, long)
                       if number < len(batches) else None)
            kept_ids, kept_vectors, embed_failures = _embed_batch(embedder, batch_ids, waves) if waves else ([], [], [])
            ids += kept_ids
            vectors += kept_vectors
            failures += decode_failures + embed_failures
            audio_seconds += sum(w.size for w in waves) / embedder.sample_rate
            for track_id, path in longs:
                vector, seconds, failure = _embed_long(embedder, track_id, path, long)
                audio_seconds += seconds
                if failure is None:
                    ids.append(track_id)
                    vectors.append(vector)
                else:
                    failures.append(failure)
            wall = time.perf_counter() - started
            progress(
                f"{embedder.name}: batch {number}/{len(batches)}: {len(ids) + len(failures)}/{len(rows)} tracks, "
                f"{(len(ids) + len(failures)) / wall:.1f} tracks/s, {audio_seconds / wall:.1f} audio-s/s, "
                f"{len(failures)} failures"
            )
    matrix = np.stack(vectors) if vectors else np.zeros((0, embedder.dim), np.float32)
    return EmbeddingResult(ItemVectors(ids, matrix), _failure_table(failures), audio_seconds,
                           time.perf_counter() - started)


def batch_fingerprint(embedder: Embedder, batch_tracks: pl.DataFrame, max_seconds: float | None,
                      long: LongTracks = LongTracks()) -> str:
    """Hash of what a batch's embeddings depend on: track ids + audio hashes, backbone identity, runner policy."""
    payload = {
        "tracks": sorted(zip(batch_tracks["track_id"].to_list(), batch_tracks["sha256"].to_list())),
        "backbone": embedder.name,
        "version": embedder.version,
        "dim": embedder.dim,
        "provenance": embedder.provenance(),
        "runner": CODE_VERSION,
        "max_seconds": max_seconds,
        "long_tracks": long.describe(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CatalogEmbedding:
    embedded: list[str]  # catalog batches embedded in this call
    skipped: list[str]  # batches whose stored table was already up to date
    removed: list[str]  # stored batches no longer in the catalog
    failures: int  # failed tracks in the batches embedded now


def stale_batches(embedder: Embedder, tracks: pl.DataFrame, out_dir: str | Path, max_seconds: float | None = None,
                  long: LongTracks = LongTracks()) -> list[str]:
    """The catalog batches (sorted) whose table in `out_dir` is missing, unreadable or was written from other
    inputs (tracks, audio hashes, backbone, policy)."""
    out = Path(out_dir)
    stale = []
    for batch in sorted(tracks["batch"].unique().to_list()):
        batch_tracks = tracks.filter(pl.col("batch") == batch).sort("track_id")
        target = out / f"{batch}.parquet"
        if not (target.exists() and stored_fingerprint(target) == batch_fingerprint(embedder, batch_tracks,
                                                                                     max_seconds, long)):
            stale.append(batch)
    return stale


def embed_batch(embedder: Embedder, tracks: pl.DataFrame, batch: str, catalog_root: str | Path,
                out_dir: str | Path, batch_size: int = 16, max_seconds: float | None = None,
                progress: Callable[[str], None] = log.info, long: LongTracks = LongTracks(),
                tags_dir: str | Path | None = None) -> int:
    """Embed catalog batch `batch` of `tracks` into `out_dir/<batch>.parquet` (embeddings, with the batch's
    fingerprint and provenance in its metadata) and `out_dir/<batch>.failures.parquet`; returns the number of
    failed tracks. `long` is the long-track policy (recorded in the metadata). With `tags_dir`, a tagging
    backbone's tag probabilities come from the same forward and go to `tags_dir/<batch>.parquet`, written as
    `embed_catalog(TagView(embedder), ...)` would write them (so the tags asset finds them up to date)."""
    batch_tracks = tracks.filter(pl.col("batch") == batch).sort("track_id")
    progress(f"{embedder.name}: embedding catalog batch {batch} ({batch_tracks.height} tracks)")
    model = embedder if tags_dir is None else EmbeddingWithTags(embedder)
    result = embed_tracks(model, batch_tracks, catalog_root, batch_size, max_seconds, progress, long)
    parts = [(embedder, slice(0, embedder.dim), out_dir)]
    if tags_dir is not None:
        parts.append((model.tagging, slice(embedder.dim, model.dim), tags_dir))
    for part, columns, folder in parts:
        vectors = ItemVectors(result.vectors.ids, np.ascontiguousarray(result.vectors.matrix[:, columns]))
        _write_batch(part, vectors, result.failures, batch_tracks, batch, folder, max_seconds, long)
    return result.failures.height


def _write_batch(embedder: Embedder, vectors: ItemVectors, failures: pl.DataFrame, batch_tracks: pl.DataFrame,
                 batch: str, out_dir: str | Path, max_seconds: float | None, long: LongTracks) -> None:
    """One batch's failures table, then its vectors with the fingerprint and provenance of `embedder`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_table(failures, "failures", out / f"{batch}.failures.parquet")
    metadata = {
        "backbone": embedder.name, "version": embedder.version, "sample_rate": str(embedder.sample_rate),
        "fingerprint": batch_fingerprint(embedder, batch_tracks, max_seconds, long), "catalog_batch": batch,
        "runner_version": CODE_VERSION, "max_seconds": str(max_seconds), "long_tracks": long.describe(),
        **{k: str(v) for k, v in embedder.provenance().items()},
    }
    write_embeddings(vectors, out / f"{batch}.parquet", metadata)


def remove_gone_batches(tracks: pl.DataFrame, out_dir: str | Path) -> list[str]:
    """Delete the tables of `out_dir` whose batch is no longer in the catalog; returns those batches, sorted."""
    present = set(tracks["batch"].unique().to_list())
    removed = set()
    for stale in Path(out_dir).glob("*.parquet"):
        batch = stale.name.removesuffix(".failures.parquet").removesuffix(".parquet")
        if batch not in present:
            stale.unlink()
            removed.add(batch)
    return sorted(removed)


def embed_catalog(
    embedder: Embedder,
    tracks: pl.DataFrame,
    catalog_root: str | Path,
    out_dir: str | Path,
    batch_size: int = 16,
    max_seconds: float | None = None,
    only_batches: list[str] | None = None,
    progress: Callable[[str], None] = log.info,
    long: LongTracks = LongTracks(),
) -> CatalogEmbedding:
    """Write `out_dir/<batch>.parquet` (embeddings) and `out_dir/<batch>.failures.parquet` per catalog batch,
    embedding only batches whose fingerprint changed, in one process. `only_batches` restricts the work to
    those batches (and removes nothing); `long` is the long-track policy (recorded in each table's metadata).
    The pipeline fans the same steps out over an executor's workers (`assets/embeddings.py`)."""
    present = sorted(tracks["batch"].unique().to_list())
    wanted = present if only_batches is None else [b for b in present if b in only_batches]
    stale = set(stale_batches(embedder, tracks.filter(pl.col("batch").is_in(wanted)), out_dir, max_seconds, long))
    embedded = [b for b in wanted if b in stale]
    failures = sum(embed_batch(embedder, tracks, batch, catalog_root, out_dir, batch_size, max_seconds, progress,
                               long) for batch in embedded)
    removed = remove_gone_batches(tracks, out_dir) if only_batches is None else []
    return CatalogEmbedding(embedded, [b for b in wanted if b not in stale], removed, failures)


def stored_fingerprint(table: Path) -> str | None:
    """The fingerprint a stored embedding table was written with; None when the file is unreadable (a corrupt
    or cut file is embedded again, never trusted)."""
    try:
        return read_metadata(table).get("fingerprint")
    except (OSError, ValueError) as error:
        log.warning("%s: unreadable (%s); embedding the batch again", table, error)
        return None


def embedding_files(out_dir: str | Path) -> list[Path]:
    """The per-batch embedding tables of a backbone folder, sorted by batch."""
    return sorted(p for p in Path(out_dir).glob("*.parquet") if not p.name.endswith(".failures.parquet"))


def read_backbone(out_dir: str | Path) -> ItemVectors:
    """All batches of a backbone's embedding table as one `ItemVectors`."""
    files = embedding_files(out_dir)
    if not files:
        raise FileNotFoundError(f"{out_dir}: no embedding tables; materialise the embeddings first")
    return read_embeddings(files)


def read_backbone_failures(out_dir: str | Path) -> pl.DataFrame:
    files = sorted(Path(out_dir).glob("*.failures.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.from_arrow(FAILURES.empty_table())
