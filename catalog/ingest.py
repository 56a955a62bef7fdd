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

from catalog.schemas import FAILURES, TRACKS, SchemaError
from catalog.sniff import describe

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64", ".opus"}
SILENCE_PEAK = 1e-5  # a file whose absolute peak is below this (full scale = 1.0) counts as silent


@dataclass(frozen=True)
class IngestResult:
    tracks: pl.DataFrame  # `tracks` contract
    failures: pl.DataFrame  # `failures` contract


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def inspect_audio(path: Path) -> tuple[float, int, int]:
    """Decode `path` fully; return (duration_s, sample_rate, channels). Raises ValueError for an unreadable,
    empty or silent file, with the reason."""
    try:
        audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable audio: {describe(path)} (decoder: {exc})") from None
    if audio.shape[0] == 0:
        raise ValueError("empty audio: no samples")
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        raise ValueError(f"silent audio: peak below {SILENCE_PEAK}")
    return audio.shape[0] / sample_rate, int(sample_rate), int(audio.shape[1])


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


def ingest_folder(root: str | Path, metadata_csv: str | Path | None = None) -> IngestResult:
    """Scan `root` recursively for audio files and build the tracks and failures tables (sorted by track id)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: catalog folder does not exist")
    metadata = read_metadata_csv(Path(metadata_csv)) if metadata_csv else {}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    now = datetime.now(UTC).replace(tzinfo=None)
    tracks: list[dict] = []
    failures: list[dict] = []
    for path in files:
        relative = path.relative_to(root)
        fields = _default_fields(relative)
        fields.update({k: v for k, v in metadata.get(relative.as_posix(), {}).items() if v not in (None, "")})
        try:
            duration, sample_rate, channels = inspect_audio(path)
        except ValueError as exc:
            failures.append({"track_id": fields["track_id"], "stage": "ingest", "error": f"{relative}: {exc}",
                             "at": now})
            continue
        tracks.append({
            "track_id": fields["track_id"],
            "artist_id": fields["artist_id"],
            "title": fields["title"],
            "audio_path": relative.as_posix(),
            "duration_s": duration,
            "sample_rate": sample_rate,
            "channels": channels,
            "sha256": sha256_of(path),
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
    return IngestResult(tracks_df, failures_df)


def _to_arrow(rows: list[dict], schema):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)
