"""Ingest a folder of audio files (plus an optional metadata CSV) into the `tracks` and `failures` tables.

Every file is fully decoded once: a truncated or corrupt file, an empty one or a silent one goes to `failures`
with the reason, and the rest of the folder goes on.

Metadata CSV (optional): one row per file, column `audio_path` (relative to the folder) required; optional
`track_id`, `artist_id`, `title`, `batch`, `tags` (separated by ";"), `caption`. Without a CSV, the track id
is the path relative to the folder without extension, the artist is "unknown", and the batch is the first
sub-folder ("default" for files at the top level).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf

from catalog.io import write_parquet
from catalog.schemas import FAILURES, TRACKS, SchemaError
from catalog.sniff import describe

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64", ".opus"}
SILENCE_PEAK = 1e-5  # a file whose absolute peak is below this (full scale = 1.0) counts as silent


@dataclass(frozen=True)
class IngestResult:
    tracks: pl.DataFrame  # `tracks` contract
    failures: pl.DataFrame  # `failures` contract
    decoded: int = 0  # files decoded by this call (the others were known unchanged from the cache)


CACHE_SCHEMA = {"audio_path": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64, "sha256": pl.String,
                "duration_s": pl.Float64, "sample_rate": pl.Int32, "channels": pl.Int32, "error": pl.String}


@dataclass(frozen=True)
class Probe:
    """What ingestion learns of one file: its identity (size, mtime, sha256) and the decode result."""

    size: int
    mtime_ns: int
    sha256: str
    duration_s: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    error: str | None = None


def read_cache(path: Path | None) -> dict[str, Probe]:
    """audio_path -> Probe from an ingest cache file (empty when there is none)."""
    if path is None or not path.exists():
        return {}
    table = pl.read_parquet(path)
    return {row.pop("audio_path"): Probe(**row) for row in table.iter_rows(named=True)}


def write_cache(path: Path, probes: dict[str, Probe]) -> None:
    """Write the probes of this scan (files gone from the folder drop out of the cache)."""
    rows = [{"audio_path": p, **probe.__dict__} for p, probe in sorted(probes.items())]
    write_parquet(pl.DataFrame(rows, schema=CACHE_SCHEMA).to_arrow(), path)


def probe(path: Path, known: Probe | None) -> tuple[Probe, bool]:
    """(the file's probe, whether it was decoded): a file with the size and mtime of its cached probe is not
    read at all; one whose content hash is unchanged is not decoded again."""
    stat = path.stat()
    if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return known, False
    digest = sha256_of(path)
    if known is not None and known.sha256 == digest:
        return Probe(stat.st_size, stat.st_mtime_ns, digest, known.duration_s, known.sample_rate, known.channels,
                     known.error), False
    try:
        duration, sample_rate, channels = inspect_audio(path)
    except ValueError as exc:
        return Probe(stat.st_size, stat.st_mtime_ns, digest, error=str(exc)), True
    return Probe(stat.st_size, stat.st_mtime_ns, digest, duration, sample_rate, channels), True


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def inspect_audio(path: Path, block_frames: int = 1 << 16) -> tuple[float, int, int]:
    """Decode `path` fully, `block_frames` at a time (memory does not grow with the file's length); return
    (duration_s, sample_rate, channels). Raises ValueError for an unreadable, empty, silent or non-finite
    (NaN / inf samples) file, with the reason."""
    frames, peak, finite = 0, 0.0, True
    try:
        with sf.SoundFile(str(path)) as handle:
            sample_rate, channels = handle.samplerate, handle.channels
            for block in handle.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    finite = False
                    break
                frames += block.shape[0]
                peak = max(peak, float(np.abs(block).max(initial=0.0)))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable audio: {describe(path)} (decoder: {exc})") from None
    if not finite:
        raise ValueError(f"non-finite audio: NaN or inf samples after {frames / sample_rate:.1f} s")
    if frames == 0:
        raise ValueError("empty audio: no samples")
    if peak < SILENCE_PEAK:
        raise ValueError(f"silent audio: peak below {SILENCE_PEAK}")
    return frames / sample_rate, int(sample_rate), int(channels)


def read_metadata_csv(path: Path) -> dict[str, dict[str, str]]:
    """audio_path -> row of the metadata CSV; raises SchemaError naming the file for a missing column or a
    duplicate path."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "audio_path" not in reader.fieldnames:
            raise SchemaError(f"{path}: metadata CSV needs an 'audio_path' column, found {reader.fieldnames}")
        rows: dict[str, dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            key = row["audio_path"]
            if key in rows:
                raise SchemaError(f"{path}: line {line}: duplicate audio_path {key!r}")
            rows[key] = row
    return rows


def _default_fields(relative: Path) -> dict[str, str]:
    return {
        "track_id": relative.with_suffix("").as_posix(),
        "artist_id": "unknown",
        "title": relative.stem,
        "batch": relative.parts[0] if len(relative.parts) > 1 else "default",
        "tags": "",
        "caption": "",
    }


def ingest_folder(root: str | Path, metadata_csv: str | Path | None = None,
                  cache: str | Path | None = None) -> IngestResult:
    """Scan `root` recursively for audio files and build the tracks and failures tables (sorted by track id).

    With `cache` (a Parquet file ingestion keeps), a file whose path, size and mtime are unchanged since the
    last call is not read again, and one whose sha256 is unchanged is not decoded again: a new batch costs its
    own decoding, not the catalog's."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: catalog folder does not exist")
    cache = Path(cache) if cache is not None else None
    known = read_cache(cache)
    probes: dict[str, Probe] = {}
    decoded = 0
    metadata = read_metadata_csv(Path(metadata_csv)) if metadata_csv else {}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    now = datetime.now(UTC).replace(tzinfo=None)
    tracks: list[dict] = []
    failures: list[dict] = []
    inside = root.resolve()
    for path in files:
        relative = path.relative_to(root)
        fields = _default_fields(relative)
        fields.update({k: v for k, v in metadata.get(relative.as_posix(), {}).items() if v not in (None, "")})
        if path.is_symlink() and not path.resolve().is_relative_to(inside):  # rglob enters no linked folder
            failures.append({"track_id": fields["track_id"], "stage": "ingest", "at": now,
                             "error": f"{relative}: a link to {path.resolve()}, outside the catalog folder; "
                                      "copy the file into the folder instead"})
            continue
        found, was_decoded = probe(path, known.get(relative.as_posix()))
        probes[relative.as_posix()] = found
        decoded += was_decoded
        if found.error is not None:
            failures.append({"track_id": fields["track_id"], "stage": "ingest", "error": f"{relative}: {found.error}",
                             "at": now})
            continue
        tracks.append({
            "track_id": fields["track_id"],
            "artist_id": fields["artist_id"],
            "title": fields["title"],
            "audio_path": relative.as_posix(),
            "duration_s": found.duration_s,
            "sample_rate": found.sample_rate,
            "channels": found.channels,
            "sha256": found.sha256,
            "batch": fields["batch"],
            "tags": [t.strip() for t in fields["tags"].split(";") if t.strip()],
            "caption": fields["caption"] or None,
        })
    missing = sorted(set(metadata) - {t["audio_path"] for t in tracks} - {f["error"].split(":")[0] for f in failures})
    for audio_path in missing:
        failures.append({"track_id": metadata[audio_path].get("track_id") or audio_path, "stage": "ingest",
                         "error": f"{audio_path}: listed in {metadata_csv} but not found under {root}", "at": now})
    tracks_df = pl.from_arrow(_to_arrow(tracks, TRACKS)).sort("track_id")
    failures_df = pl.from_arrow(_to_arrow(failures, FAILURES))
    if cache is not None:
        write_cache(cache, probes)
    return IngestResult(tracks_df, failures_df, decoded)


def _to_arrow(rows: list[dict], schema):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)
