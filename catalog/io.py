"""Atomic Parquet IO for the data contracts and the embedding tables.

Writes go to a temporary file in the destination folder, are fsynced, then renamed over the target, so an
interrupted run never leaves a half-written table behind.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.schemas import SchemaError, validate_table

log = logging.getLogger(__name__)


def umask() -> int:
    """The process's file-mode creation mask (from /proc where it is shown, else by setting and restoring it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def follow_umask(path: Path) -> None:
    """Give a file (0o666) or folder (0o777) made by `tempfile` (0o600 / 0o700) the mode any other file or
    folder would get under the umask, so that others sharing the storage can read it."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask())


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `target` (`.<name>.pid<pid>.<random><suffix>.tmp`); on success fsync it, give it
    the mode the umask gives new files and rename it onto `target`, else delete it. A process killed inside
    leaves its temp file; `remove_orphan_temp_files` deletes it once that process is gone."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.pid{os.getpid()}.", suffix=suffix + ".tmp",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        follow_umask(tmp)
        os.replace(tmp, target)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"{target}: the disk is full ({error.strerror}); nothing was written, the "
                                       "previous file (if any) is intact. Free space and run again") from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


TEMP_PID = re.compile(r"\.pid(\d+)\.")


def remove_orphan_temp_files(root: str | Path) -> list[Path]:
    """Delete the temp files under `root` that `atomic_path` left when its process was killed (the pid in the
    name no longer runs); returns them. Temp files of live processes (a concurrent run) are kept."""
    removed = []
    for path in Path(root).rglob(".*.tmp"):
        match = TEMP_PID.search(path.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# I/O errors that a second try may not meet (a network file system, a busy device): retried; any other error
# (bad input, a full disk, a missing file) is raised at once.
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET,
                              errno.ESTALE, errno.EINTR})
T = TypeVar("T")


def retry_transient(action: Callable[[], T], what: str, attempts: int = 3, delay_s: float = 1.0) -> T:
    """`action()`, tried up to `attempts` times while it fails with a transient I/O error (TRANSIENT_ERRNOS),
    waiting `delay_s`, then twice that, between tries; `what` names the file in the log."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except OSError as error:
            if error.errno not in TRANSIENT_ERRNOS or attempt == attempts:
                raise
            log.warning("%s: transient I/O error (%s), try %d of %d", what, error, attempt + 1, attempts)
            time.sleep(delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def update_with_table(digest, table: pl.DataFrame) -> None:
    """Feed a hashlib `digest` the content of `table`: column names and row hashes, independent of row order."""
    digest.update(",".join(table.columns).encode())
    if table.height:
        digest.update(table.hash_rows(seed=0).sort().to_numpy().tobytes())


def write_parquet(table: pa.Table, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `table` to `path` atomically; `metadata` is merged into the Parquet schema metadata."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    def write() -> None:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    retry_transient(write, str(path))
    return Path(path)


def write_table(table: pa.Table | pl.DataFrame, kind: str, path: str | Path) -> Path:
    """Validate a contract table (`kind` in catalog.schemas.SPECS) and write it atomically."""
    arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
    return write_parquet(validate_table(arrow, kind, source=path), path)


def read_table(path: str | Path, kind: str) -> pl.DataFrame:
    """Read and validate a contract table; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {kind} table")
    try:
        arrow = retry_transient(lambda: pq.read_table(path), str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{path} ({kind}): not a readable Parquet file ({exc})") from None
    return pl.from_arrow(validate_table(arrow, kind, source=path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string key/value metadata stored in a Parquet file's schema."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). float32, same shape."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class ItemVectors:
    """Dense vectors for a set of items: `ids[i]` owns row `matrix[i]` (float32, shape (n, dim))."""

    ids: list[str]
    matrix: np.ndarray

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.ids):
            raise ValueError(f"ItemVectors: {len(self.ids)} ids but matrix of shape {self.matrix.shape}")

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index_of(self) -> dict[str, int]:
        return {item: row for row, item in enumerate(self.ids)}

    def subset(self, ids: list[str]) -> "ItemVectors":
        """The rows of `ids`, in that order; raises KeyError naming the first unknown id."""
        position = self.index_of()
        missing = [i for i in ids if i not in position]
        if missing:
            raise KeyError(f"no vector for {len(missing)} item(s), first {missing[0]!r}")
        return ItemVectors(list(ids), self.matrix[[position[i] for i in ids]])


def embeddings_to_arrow(vectors: ItemVectors) -> pa.Table:
    """The `embeddings/<backbone>` contract: track_id str, embedding fixed_size_list<f32>[dim]."""
    flat = pa.array(np.ascontiguousarray(vectors.matrix, dtype=np.float32).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.dim)
    return pa.table({"track_id": pa.array(vectors.ids, pa.string()), "embedding": column})


def write_embeddings(vectors: ItemVectors, path: str | Path, metadata: dict[str, str]) -> Path:
    """Write an embedding table atomically with its provenance (backbone, dim, weights sha256, ...)."""
    meta = {"dim": str(vectors.dim), **metadata}
    return write_parquet(embeddings_to_arrow(vectors), path, meta)


def read_embeddings(paths: str | Path | list[str | Path]) -> ItemVectors:
    """Read one or several embedding Parquet files (e.g. one per catalog batch) into one `ItemVectors`."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    dim: int | None = None
    for path in paths:  # polars, not pyarrow.parquet, whose reader imports pandas (slow for a one-off command)
        table = retry_transient(lambda path=path: pl.read_parquet(path), str(path))
        if table.columns[:2] != ["track_id", "embedding"]:
            raise SchemaError(f"{path}: embedding table needs columns track_id, embedding")
        column_type = table.schema["embedding"]
        if not isinstance(column_type, pl.Array) or not column_type.inner.is_float():
            raise SchemaError(f"{path}: column 'embedding' has type {column_type}, expected fixed_size_list<float> "
                              "(a polars Array of floats)")
        width = column_type.size
        if dim is not None and width != dim:
            raise SchemaError(f"{path}: embedding dim {width} differs from {dim} in earlier files")
        dim = width
        ids.extend(table["track_id"].to_list())
        blocks.append(table["embedding"].to_numpy().astype(np.float32, copy=False).reshape(-1, width))
    matrix = np.concatenate(blocks) if blocks else np.zeros((0, dim or 0), np.float32)
    return ItemVectors(ids, matrix)


def write_json(payload: dict, path: str | Path) -> Path:
    """Write JSON atomically (sorted keys, indented)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return Path(path)
