"""The `precomputed` backbone: vectors the user already has (Music4All-Onion `id_*.tsv` feature files, published
`.npy` dumps, Parquet tables), used like any audio backbone.

It reads no audio (`needs_audio = False`): the file is loaded once when the backbone is built and the runner
calls `embed_ids`; a catalog track the file has no vector for becomes a failure row of stage "embed".

Formats (from the suffix of `path`, or the `format` option):
- parquet (`.parquet`, `.pq`, `.pqt`): an id column (`id_column`, default `track_id`; `id` is accepted when
  `track_id` is absent) and either one list / fixed_size_list column of numbers (`vector_column`, default the
  single list column) or one numeric column per dimension (every numeric column except the id);
- npy: a 2-D numeric array of shape (n, dim) and the `ids` text file, one track id per line (row i of the
  array is line i + 1; blank trailing lines are ignored);
- tsv (Music4All-Onion `id_*.tsv`): tab-separated, the track id first and then one value per column, or one
  column holding the whole vector as comma-separated values (`0.1,0.2` or `[0.1, 0.2]`); the header line is
  optional (there is one when the first line's second field is not a number).

Every problem with the file raises `SchemaError` (a ValueError) naming the file, the problem and, where it
applies, the row or line and the track id at fault; a missing file raises FileNotFoundError naming the option.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from catalog.ingest import sha256_of
from catalog.io import ItemVectors
from catalog.schemas import SchemaError
from embedders.base import Backbone, register_backbone

SUFFIX_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".pqt": "parquet", ".npy": "npy", ".tsv": "tsv"}
FORMATS = ("parquet", "npy", "tsv")

Locate = Callable[[int], str]  # row of the matrix -> where it is in the file, e.g. "line 3"
# What a reader returns: ids, their (n, dim) float32 vectors, where row i is in the file, provenance to add
Loaded = tuple[list[str], np.ndarray, Locate, dict[str, str]]


def _fail(path: Path, problem: str) -> SchemaError:
    return SchemaError(f"{path}: {problem}")


def _existing_file(value: str | None, option: str) -> Path:
    """The file named by option `option`; FileNotFoundError naming the option when unset or absent."""
    if not value:
        raise FileNotFoundError(f"precomputed: no file given; set the `{option}` option")
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"precomputed: {path} (the `{option}` option) does not exist or is not a file")
    return path


def _format_of(path: Path, given: str | None) -> str:
    fmt = given.lower() if given else SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt not in FORMATS:
        shown = repr(given) if given else f"suffix {path.suffix!r}"
        raise _fail(path, f"unknown format ({shown}); use a .parquet, .npy or .tsv file or set `format` to one of "
                          f"{', '.join(FORMATS)}")
    return fmt


def _validate(path: Path, ids: list[str], matrix: np.ndarray, locate: Locate) -> None:
    """Raise for an empty id, vectors of dimension 0, a non-finite value or a duplicate id (the first of each)."""
    series = pl.Series("track_id", ids, dtype=pl.String)
    empty = (series == "").arg_true()
    if empty.len():
        raise _fail(path, f"empty track id at {locate(empty[0])}")
    if matrix.shape[1] == 0:
        raise _fail(path, "the vectors have no values (dimension 0)")
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        row = int(bad[0])
        column = int(np.flatnonzero(~np.isfinite(matrix[row]))[0])
        raise _fail(path, f"non-finite value (NaN, inf or missing) in the vector of id {ids[row]!r} at "
                          f"{locate(row)}, value {column}")
    duplicated = series.is_duplicated().arg_true()
    if duplicated.len():
        first = ids[duplicated[0]]
        rows = [r for r in duplicated.to_list() if ids[r] == first]
        raise _fail(path, f"duplicate id {first!r} at {locate(rows[0])} and {locate(rows[1])}")


# ------------------------------------------------------------------------------------------------- parquet


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _list_matrix(path: Path, table: pa.Table, name: str, ids: list[str]) -> np.ndarray:
    """(n, dim) float32 from list column `name`: every row must hold the same number of values."""
    column = table.column(name)
    if not _is_numeric(column.type.value_type):
        raise _fail(path, f"column {name!r} has type {column.type}, expected a list of numbers")
    if column.null_count:
        row = int(np.argmax(pc.is_null(column).to_numpy(zero_copy_only=False)))
        raise _fail(path, f"no vector (null) in column {name!r} for id {ids[row]!r} at row {row}")
    lengths = pc.list_value_length(column).to_numpy()
    other = np.flatnonzero(lengths != lengths[0])
    if other.size:
        row = int(other[0])
        raise _fail(path, f"rows of different dimension: id {ids[row]!r} at row {row} has {lengths[row]} values, "
                          f"id {ids[0]!r} at row 0 has {lengths[0]}")
    flat = pc.list_flatten(column).to_numpy()
    return flat.astype(np.float32, copy=False).reshape(len(ids), int(lengths[0]))


def _row(row: int) -> str:
    return f"row {row}"


def _read_parquet(path: Path, id_column: str, vector_column: str | None) -> Loaded:
    """A Parquet vectors table; its provenance names the vector column(s) used."""
    try:
        table = pq.read_table(path)
    except pa.ArrowException as exc:
        raise _fail(path, f"not a readable Parquet file ({exc})") from None
    names = table.column_names
    id_name = "id" if id_column == "track_id" and id_column not in names and "id" in names else id_column
    if id_name not in names:
        raise _fail(path, f"no id column {id_column!r}; columns: {names} (set `id_column`)")
    if table.num_rows == 0:
        raise _fail(path, "empty: the table has no rows")
    id_values = table.column(id_name)
    if id_values.null_count:
        row = int(np.argmax(pc.is_null(id_values).to_numpy(zero_copy_only=False)))
        raise _fail(path, f"null id in column {id_name!r} at row {row}")
    ids = pc.cast(id_values, pa.string()).to_pylist()
    if vector_column is not None:
        if vector_column not in names:
            raise _fail(path, f"no vector column {vector_column!r} (the `vector_column` option); columns: {names}")
        if not _is_list(table.schema.field(vector_column).type):
            raise _fail(path, f"column {vector_column!r} has type {table.schema.field(vector_column).type}, "
                              f"expected a list of numbers")
        return ids, _list_matrix(path, table, vector_column, ids), _row, {"vector_columns": vector_column}
    others = [field for field in table.schema if field.name != id_name]
    lists = [field.name for field in others if _is_list(field.type)]
    if len(lists) > 1:
        raise _fail(path, f"several list columns {lists}; set `vector_column` to the one holding the vectors")
    if lists:
        return ids, _list_matrix(path, table, lists[0], ids), _row, {"vector_columns": lists[0]}
    numeric = [field.name for field in others if _is_numeric(field.type)]
    if not numeric:
        raise _fail(path, f"no vector column: neither a list column nor numeric columns besides {id_name!r}; "
                          f"columns: {names}")
    matrix = np.empty((len(ids), len(numeric)), np.float32)
    for index, name in enumerate(numeric):
        matrix[:, index] = table.column(name).to_numpy()
    return ids, matrix, _row, {"vector_columns": f"{len(numeric)} numeric columns {numeric[0]!r}..{numeric[-1]!r}"}


# ----------------------------------------------------------------------------------------------------- npy


def _read_npy(path: Path, ids_path: Path) -> Loaded:
    """A `.npy` array and its ids (`ids_path`, row i = line i + 1); its provenance adds the ids file's sha256."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _fail(path, f"not a readable .npy array ({exc})") from None
    if array.ndim != 2:
        raise _fail(path, f"expected a 2-D array (tracks x dimensions), got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise _fail(path, f"expected numbers, got dtype {array.dtype}")
    if array.shape[0] == 0:
        raise _fail(path, "empty: the array has no rows")
    lines = ids_path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != array.shape[0]:
        raise _fail(path, f"{array.shape[0]} rows but {ids_path} has {len(lines)} ids; row i of the array needs "
                          f"the id on line i + 1")

    def locate(row: int) -> str:
        return f"row {row} (line {row + 1} of {ids_path})"

    ids = [line.strip() for line in lines]
    return ids, array.astype(np.float32, copy=False), locate, {"ids_sha256": sha256_of(ids_path)}


# ----------------------------------------------------------------------------------------------------- tsv


def _is_number(field: str) -> bool:
    """Whether a TSV field is a value: a number, or the first number of a comma-separated vector."""
    try:
        float(field.strip().strip('"').strip("[] ").split(",")[0])
    except ValueError:
        return False
    return True


def _first_bad_line(path: Path, header: bool, columns: int) -> str | None:
    """What is wrong with the first malformed data line (called only after the CSV reader failed): a wrong
    number of fields, or a field that is not a number; None when no line is found."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if (number == 1 and header) or not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != columns:
                return (f"rows of different dimension: id {fields[0]!r} at line {number} has {len(fields) - 1} "
                        f"values, line {1 + int(header)} has {columns - 1}")
            bad = next((field for field in fields[1:] if not _is_number(field)), None)
            if bad is not None:
                return f"not a number in the vector of id {fields[0]!r} at line {number}: {bad!r}"
    return None


def _list_strings_matrix(path: Path, ids: list[str], values: pa.ChunkedArray, locate: Locate) -> np.ndarray:
    """(n, dim) float32 from one column of comma-separated vectors (`0.1,0.2` or `[0.1, 0.2]`)."""
    parts = pc.split_pattern(pc.utf8_trim(values, "[] "), ",")
    lengths = pc.list_value_length(parts).to_numpy()
    other = np.flatnonzero(lengths != lengths[0])
    if other.size:
        row = int(other[0])
        raise _fail(path, f"rows of different dimension: id {ids[row]!r} at {locate(row)} has {lengths[row]} "
                          f"values, id {ids[0]!r} at {locate(0)} has {lengths[0]}")
    try:
        flat = pc.cast(pc.utf8_trim_whitespace(pc.list_flatten(parts)), pa.float32())
    except pa.ArrowInvalid as exc:
        for row, text in enumerate(values.to_pylist()):
            bad = next((part for part in text.strip("[] ").split(",") if not _is_number(part)), None)
            if bad is not None:
                raise _fail(path, f"not a number in the vector of id {ids[row]!r} at {locate(row)}: "
                                  f"{bad.strip()!r}") from None
        raise _fail(path, f"unreadable vectors ({exc})") from None
    return flat.to_numpy().reshape(len(ids), int(lengths[0]))


def _read_tsv(path: Path) -> Loaded:
    """A Music4All-Onion style TSV: id, then one value per column or one comma-separated vector column."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().rstrip("\r\n").split("\t")
    if first == [""]:
        raise _fail(path, "empty: no header or vector on line 1")
    if len(first) < 2:
        raise _fail(path, "line 1 has a single column; expected the track id, a tab, then the vector")
    header = not _is_number(first[1])
    names = [f"c{i}" for i in range(len(first))]
    list_strings = len(first) == 2  # one value column: each value may be a whole comma-separated vector
    types = {name: pa.string() if index == 0 or list_strings else pa.float32() for index, name in enumerate(names)}
    wrong_width: list[pacsv.InvalidRow] = []

    def keep_wrong_width(row: pacsv.InvalidRow) -> str:
        wrong_width.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=int(header)),
            parse_options=pacsv.ParseOptions(delimiter="\t", invalid_row_handler=keep_wrong_width),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except pa.ArrowInvalid as exc:
        raise _fail(path, _first_bad_line(path, header, len(names)) or f"unreadable TSV ({exc})") from None
    if wrong_width:
        raise _fail(path, _first_bad_line(path, header, len(names)) or f"malformed line {wrong_width[0].text!r}")
    if table.num_rows == 0:
        raise _fail(path, "empty: no vectors" + (" after the header" if header else ""))
    ids = table.column("c0").to_pylist()

    def locate(row: int) -> str:
        return f"line {row + 1 + int(header)}"

    if list_strings:
        return ids, _list_strings_matrix(path, ids, table.column("c1"), locate), locate, {}
    matrix = np.empty((table.num_rows, len(names) - 1), np.float32)
    for index in range(1, len(names)):
        matrix[:, index - 1] = table.column(index).to_numpy()
    return ids, matrix, locate, {}


# ------------------------------------------------------------------------------------------------ backbone


@register_backbone
class PrecomputedEmbedder(Backbone):
    """Vectors read from a file (`path`) instead of computed from audio; see the module docstring for the
    formats. Building it loads and validates the whole file (float32, n x dim in memory)."""

    name = "precomputed"
    sample_rate = 0  # reads no audio
    version = "1"
    needs_audio = False
    weight_options = ("path", "ids")

    @dataclass(frozen=True)
    class Options:
        path: str | None = None  # the vectors file: .parquet, .npy or .tsv
        ids: str | None = None  # .npy only: text file with one track id per line (row i = line i + 1)
        format: str | None = None  # "parquet" | "npy" | "tsv"; default from the suffix of `path`
        id_column: str = "track_id"  # parquet: the id column ("id" is accepted when track_id is absent)
        vector_column: str | None = None  # parquet: the list column; default the single list column, else
        # every numeric column except the id

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.path = _existing_file(self.options.path, "path")
        self.format = _format_of(self.path, self.options.format)
        if self.format != "npy" and self.options.ids is not None:
            raise ValueError(f"precomputed: the `ids` option is for .npy files only; {self.path} is {self.format}")
        if self.format == "npy":
            if self.options.ids is None:
                raise FileNotFoundError(f"precomputed: {self.path} is a .npy array; set the `ids` option to a "
                                        f"text file with one track id per line")
            loaded = _read_npy(self.path, _existing_file(self.options.ids, "ids"))
        elif self.format == "parquet":
            loaded = _read_parquet(self.path, self.options.id_column, self.options.vector_column)
        else:
            loaded = _read_tsv(self.path)
        ids, matrix, locate, provenance = loaded
        _validate(self.path, ids, matrix, locate)
        self.vectors = ItemVectors(ids, matrix)
        self.dim = self.vectors.dim
        self._rows = self.vectors.index_of()
        self._provenance = {"weights_sha256": sha256_of(self.path), "source": str(self.path),
                            "format": self.format, "policy": "vectors given by the user", **provenance}

    def embed_ids(self, track_ids: Sequence[str]) -> tuple[np.ndarray, dict[str, str]]:
        """The vectors of `track_ids` in that order, shape (n, dim) float32, and {track_id: reason} for the ids
        the file has no vector for (their rows are zeros)."""
        rows = np.array([self._rows.get(track_id, -1) for track_id in track_ids], dtype=np.int64)
        matrix = np.zeros((len(rows), self.dim), np.float32)
        present = rows >= 0
        matrix[present] = self.vectors.matrix[rows[present]]
        reason = f"no precomputed vector in {self.path}"
        return matrix, {track_id: reason for track_id, row in zip(track_ids, rows) if row < 0}

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        raise TypeError("the precomputed backbone looks vectors up by track id, not audio: call embed_ids")

    def provenance(self) -> dict[str, str]:
        """sha256 of the vectors file (and of the ids file for .npy), its path and format, the columns used."""
        return dict(self._provenance)

    def unknown_ids(self, catalog_ids: Collection[str]) -> list[str]:
        """Ids of the file that are not in `catalog_ids`, sorted (vectors no catalog track will use)."""
        return sorted(set(self.vectors.ids) - set(catalog_ids))
