"""Atomic Parquet IO and the embedding tables."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from catalog.io import (
    ItemVectors,
    atomic_path,
    read_embeddings,
    read_metadata,
    read_table,
    remove_orphan_temp_files,
    write_embeddings,
    write_json,
    write_parquet,
    write_table,
)
from catalog.schemas import SchemaError


def test_atomic_path_exception_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "table.parquet"
    write_parquet(pa.table({"x": [1, 2, 3]}), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="crash mid-write"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a table")
            assert tmp.parent == target.parent and tmp != target
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_atomic_path_success_replaces_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "note.txt"  # parent folders are created
    with atomic_path(target) as tmp:
        tmp.write_text("first")
    with atomic_path(target) as tmp:
        tmp.write_text("second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["note.txt"]


def test_failed_parquet_write_keeps_previous_table(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pa.table({"x": [1]}), target)
    with pytest.raises(AttributeError):
        write_parquet("not a table", target)  # type: ignore[arg-type]
    assert pl.read_parquet(target)["x"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_write_table_validates_and_read_table_round_trips(tmp_path):
    frame = pl.DataFrame({"user_id": ["u1", "u2"], "track_id": ["t1", "t1"],
                          "timestamp": [datetime(2024, 1, 1), datetime(2024, 1, 2)], "count": [1, 5]})
    path = write_table(frame, "interactions", tmp_path / "interactions.parquet")
    back = read_table(path, "interactions")
    assert back["count"].dtype == pl.Int32 and back["count"].to_list() == [1, 5]
    assert back["user_id"].to_list() == ["u1", "u2"]
    with pytest.raises(SchemaError, match="bad.parquet"):
        write_table(frame.drop("count"), "interactions", tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        read_table(tmp_path / "missing.parquet", "tracks")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet")
    with pytest.raises(SchemaError, match="garbage.parquet"):
        read_table(garbage, "tracks")


def test_embeddings_round_trip_with_metadata(tmp_path):
    rng = np.random.default_rng(0)
    vectors = ItemVectors(["t1", "t2", "t3"], rng.standard_normal((3, 8)).astype(np.float32))
    path = write_embeddings(vectors, tmp_path / "b0.parquet", {"backbone": "toy", "weights_sha256": "abc"})
    back = read_embeddings(path)
    assert back.ids == ["t1", "t2", "t3"] and back.dim == 8
    assert back.matrix.dtype == np.float32
    np.testing.assert_array_equal(back.matrix, vectors.matrix)
    meta = read_metadata(path)
    assert meta["backbone"] == "toy" and meta["weights_sha256"] == "abc" and meta["dim"] == "8"
    import pyarrow.parquet as pq

    column_type = pq.read_schema(path).field("embedding").type
    assert pa.types.is_fixed_size_list(column_type) and column_type.list_size == 8
    assert column_type.value_type == pa.float32()


def test_read_several_batch_files_in_order(tmp_path):
    a = ItemVectors(["t1", "t2"], np.arange(8, dtype=np.float32).reshape(2, 4))
    b = ItemVectors(["t3"], np.full((1, 4), 9.0, np.float32))
    paths = [write_embeddings(a, tmp_path / "b0.parquet", {}), write_embeddings(b, tmp_path / "b1.parquet", {})]
    both = read_embeddings(paths)
    assert both.ids == ["t1", "t2", "t3"]
    np.testing.assert_array_equal(both.matrix, np.vstack([a.matrix, b.matrix]))
    assert both.subset(["t3", "t1"]).matrix.tolist() == [[9.0] * 4, [0.0, 1.0, 2.0, 3.0]]
    with pytest.raises(KeyError, match="t9"):
        both.subset(["t1", "t9"])


def test_dim_mismatch_between_files(tmp_path):
    write_embeddings(ItemVectors(["t1"], np.zeros((1, 4), np.float32)), tmp_path / "b0.parquet", {})
    write_embeddings(ItemVectors(["t2"], np.zeros((1, 5), np.float32)), tmp_path / "b1.parquet", {})
    with pytest.raises(SchemaError, match=r"b1\.parquet.*dim 5.*4"):
        read_embeddings([tmp_path / "b0.parquet", tmp_path / "b1.parquet"])


def test_embedding_table_with_wrong_columns(tmp_path):
    path = write_parquet(pa.table({"id": ["t1"], "vec": [[1.0, 2.0]]}), tmp_path / "x.parquet")
    with pytest.raises(SchemaError, match="x.parquet"):
        read_embeddings(path)
    path = write_parquet(pa.table({"track_id": ["t1"], "embedding": [[1.0, 2.0]]}), tmp_path / "y.parquet")
    with pytest.raises(SchemaError, match="fixed_size_list"):
        read_embeddings(path)


def test_item_vectors_shape_check():
    with pytest.raises(ValueError, match="2 ids"):
        ItemVectors(["a", "b"], np.zeros((3, 4), np.float32))


def test_write_json_is_sorted_and_atomic(tmp_path):
    path = write_json({"b": 1, "a": [1, 2]}, tmp_path / "c.json")
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, mask):
    """Atomic writes go through tempfile (mode 0600), yet the table must get the mode any new file gets, so
    another user or pod sharing the storage can read it."""
    import os

    from catalog.io import write_json, write_parquet

    previous = os.umask(mask)
    try:
        table = write_parquet(pa.table({"x": [1, 2]}), tmp_path / "t.parquet")
        config = write_json({"a": 1}, tmp_path / "config.json")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(previous)
    expected = 0o666 & ~mask
    assert plain.stat().st_mode & 0o777 == expected
    assert table.stat().st_mode & 0o777 == expected and config.stat().st_mode & 0o777 == expected


def test_transient_io_errors_are_retried_and_nothing_else_is(tmp_path, monkeypatch):
    import errno

    import catalog.io
    from catalog.io import write_parquet

    real = catalog.io.pq.write_table
    calls = []

    def flaky(code):
        def write(table, where):
            calls.append(code)
            if len(calls) == 1:
                raise OSError(code, "injected")
            real(table, where)
        return write

    monkeypatch.setattr(catalog.io.time, "sleep", lambda s: None)  # no waiting in the test
    monkeypatch.setattr(catalog.io.pq, "write_table", flaky(errno.EIO))
    write_parquet(pa.table({"x": [1]}), tmp_path / "a.parquet")  # EIO once, then written
    assert len(calls) == 2 and pa.parquet.read_table(tmp_path / "a.parquet").num_rows == 1

    calls.clear()
    monkeypatch.setattr(catalog.io.pq, "write_table", flaky(errno.EACCES))  # not transient: raised at once
    with pytest.raises(PermissionError):
        write_parquet(pa.table({"x": [1]}), tmp_path / "b.parquet")
    assert len(calls) == 1 and not (tmp_path / "b.parquet").exists()

    calls.clear()

    def always_failing(table, where):
        calls.append(errno.EIO)
        raise OSError(errno.EIO, "always")

    monkeypatch.setattr(catalog.io.pq, "write_table", always_failing)
    with pytest.raises(OSError, match="always"):
        write_parquet(pa.table({"x": [1]}), tmp_path / "c.parquet")
    assert len(calls) == 3  # gave up after 3 tries


def test_temp_files_of_killed_processes_are_removed_and_live_ones_kept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    (tmp_path / "sub").mkdir()
    orphan = tmp_path / "sub" / f".metrics.parquet.pid{dead_pid}.k2j4a_x9.tmp"
    live = tmp_path / f".report.md.pid{os.getpid()}.abcd1234.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for path in (orphan, live, unrelated):
        path.write_text("partial")
    with atomic_path(tmp_path / "x.parquet") as tmp:  # the names atomic_path gives carry its pid
        assert f".pid{os.getpid()}." in tmp.name
    assert remove_orphan_temp_files(tmp_path) == [orphan]
    assert live.exists() and unrelated.exists() and not orphan.exists()
