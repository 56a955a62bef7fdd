"""The table schemas of the data contracts (DESIGN.md, "Data contracts") and their validation.

Every id is a string. Validation raises `SchemaError`, whose message names the file, the column and the
offending rows, so that a user can fix the input without reading our code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

TRACKS = pa.schema([
    ("track_id", pa.string()),
    ("artist_id", pa.string()),
    ("title", pa.string()),
    ("audio_path", pa.string()),  # relative to the catalog root
    ("duration_s", pa.float32()),
    ("sample_rate", pa.int32()),
    ("channels", pa.int8()),
    ("sha256", pa.string()),
    ("batch", pa.string()),
    ("tags", pa.list_(pa.string())),
    ("caption", pa.string()),  # nullable
])
ARTISTS = pa.schema([("artist_id", pa.string()), ("name", pa.string())])
INTERACTIONS = pa.schema([
    ("user_id", pa.string()),
    ("track_id", pa.string()),
    ("timestamp", pa.timestamp("us")),
    ("count", pa.int32()),
])
ARTIST_EDGES = pa.schema([("src", pa.string()), ("dst", pa.string())])
QUERIES = pa.schema([("query_id", pa.string()), ("text", pa.string()), ("relevant", pa.list_(pa.string()))])
FAILURES = pa.schema([
    ("track_id", pa.string()),
    ("stage", pa.string()),
    ("error", pa.string()),
    ("at", pa.timestamp("us")),
])
METRICS = pa.schema([
    ("experiment", pa.string()),
    ("dataset", pa.string()),
    ("backbone", pa.string()),
    ("recommender", pa.string()),
    ("scenario", pa.string()),  # hot / semi_cold / cold
    ("metric", pa.string()),
    ("k", pa.int32()),
    ("value", pa.float64()),
    ("ci_low", pa.float64()),
    ("ci_high", pa.float64()),
    ("n", pa.int64()),
])


@dataclass(frozen=True)
class TableSpec:
    """A named table contract: its schema, the columns that must be unique together, the non-nullable ones."""

    name: str
    schema: pa.Schema
    unique: tuple[str, ...] = ()
    nullable: tuple[str, ...] = ()


SPECS: dict[str, TableSpec] = {
    "tracks": TableSpec("tracks", TRACKS, unique=("track_id",), nullable=("caption",)),
    "artists": TableSpec("artists", ARTISTS, unique=("artist_id",)),
    "interactions": TableSpec("interactions", INTERACTIONS, unique=("user_id", "track_id")),
    "artist_edges": TableSpec("artist_edges", ARTIST_EDGES, unique=("src", "dst")),
    "queries": TableSpec("queries", QUERIES, unique=("query_id",)),
    "failures": TableSpec("failures", FAILURES),
    "metrics": TableSpec("metrics", METRICS, nullable=("ci_low", "ci_high")),
}


class SchemaError(ValueError):
    """A table breaks its data contract. The message names the file, the column and the rows at fault."""


def _rows_preview(rows: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"rows {shown}{more}"


def validate_table(table: pa.Table, kind: str, source: str | Path = "<in-memory table>") -> pa.Table:
    """Check `table` against the contract `kind` and return it cast to the exact schema (column order too).

    Raises `SchemaError` for a missing column, a column of the wrong type, nulls in a non-nullable column, or
    duplicate keys. Integer/float widths are cast when lossless (e.g. int64 -> int32 counts).
    """
    spec = SPECS[kind]
    where = f"{source} ({kind})"
    missing = [f.name for f in spec.schema if f.name not in table.column_names]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; expected columns {spec.schema.names}")
    columns = []
    for field in spec.schema:
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                bad = _uncastable_rows(column, field.type)
                at = f" at {_rows_preview(bad)} (first: {column[bad[0]].as_py()!r})" if bad else ""
                raise SchemaError(
                    f"{where}: column '{field.name}' has type {column.type}, expected {field.type}{at} ({exc})"
                ) from None
        if field.name not in spec.nullable and column.null_count:
            nulls = [i for i, v in enumerate(column.is_null().to_pylist()) if v]
            raise SchemaError(f"{where}: column '{field.name}' has nulls at {_rows_preview(nulls)}")
        columns.append(column)
    result = pa.Table.from_arrays(columns, schema=spec.schema)
    if spec.unique and result.num_rows:
        _check_unique(result, spec, where)
    return result


def _uncastable_rows(column: pa.ChunkedArray, target: pa.DataType, block: int = 4096) -> list[int]:
    """Rows of `column` whose value cannot be cast safely to `target` (blocks that cast are skipped whole);
    empty when no value of the column's type could be cast (the type itself is wrong)."""
    try:
        pa.array([], column.type).cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return []
    bad: list[int] = []
    for start in range(0, len(column), block):
        part = column.slice(start, block)
        try:
            part.cast(target, safe=True)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        for offset in range(len(part)):
            try:
                part.slice(offset, 1).cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad.append(start + offset)
    return bad


def _check_unique(table: pa.Table, spec: TableSpec, where: str) -> None:
    keys = list(zip(*(table.column(c).to_pylist() for c in spec.unique)))
    first_seen: dict[tuple, int] = {}
    duplicates: list[int] = []
    for row, key in enumerate(keys):
        if key in first_seen:
            duplicates.append(row)
        else:
            first_seen[key] = row
    if duplicates:
        example = dict(zip(spec.unique, keys[duplicates[0]]))
        raise SchemaError(
            f"{where}: duplicate {'+'.join(spec.unique)} at {_rows_preview(duplicates)} (first: {example})"
        )


def check_references(
    table: pa.Table, column: str, known: set[str], source: str | Path, what: str
) -> None:
    """Raise `SchemaError` if `table[column]` holds values outside `known` (e.g. interactions -> tracks)."""
    values = table.column(column).to_pylist()
    unknown = [i for i, v in enumerate(values) if v not in known]
    if unknown:
        raise SchemaError(
            f"{source}: column '{column}' points at unknown {what} at {_rows_preview(unknown)} "
            f"(first: {values[unknown[0]]!r})"
        )
