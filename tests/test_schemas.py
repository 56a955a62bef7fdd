"""Contract validation: every kind of bad table raises a SchemaError naming the file, the column and the rows."""
from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from catalog.schemas import INTERACTIONS, TRACKS, SchemaError, check_references, validate_table

SOURCE = "/data/listens.parquet"


def interactions(**overrides) -> pa.Table:
    columns = {
        "user_id": pa.array(["u1", "u1", "u2", "u3"], pa.string()),
        "track_id": pa.array(["t1", "t2", "t1", "t3"], pa.string()),
        "timestamp": pa.array([datetime(2024, 1, d) for d in (1, 2, 3, 4)], pa.timestamp("us")),
        "count": pa.array([1, 2, 3, 4], pa.int32()),
    }
    columns.update(overrides)
    return pa.table(columns)


def tracks(ids=("t1", "t2", "t3"), captions=("a", None, "c")) -> pa.Table:
    n = len(ids)
    return pa.table({
        "track_id": list(ids), "artist_id": ["a"] * n, "title": ["x"] * n, "audio_path": [f"{i}.wav" for i in ids],
        "duration_s": [1.5] * n, "sample_rate": [22050] * n, "channels": [1] * n, "sha256": ["0" * 64] * n,
        "batch": ["b0"] * n, "tags": [["rock"]] * n, "caption": list(captions),
    })


def test_valid_table_is_cast_to_the_exact_schema():
    result = validate_table(tracks(), "tracks", SOURCE)  # python ints/floats arrive as int64/double
    assert result.schema.equals(TRACKS)
    assert result.column("caption").null_count == 1  # caption is nullable
    assert result.column("duration_s").to_pylist() == [1.5] * 3


def test_column_order_follows_the_contract():
    table = interactions().select(["count", "timestamp", "track_id", "user_id"])
    assert validate_table(table, "interactions").column_names == INTERACTIONS.names


def test_lossless_cast_int64_count_to_int32_is_accepted():
    table = interactions(count=pa.array([1, 2, 3, 40_000], pa.int64()))
    result = validate_table(table, "interactions", SOURCE)
    assert result.schema.field("count").type == pa.int32()
    assert result.column("count").to_pylist() == [1, 2, 3, 40_000]


def test_missing_column_names_file_and_column():
    with pytest.raises(SchemaError) as error:
        validate_table(interactions().drop_columns(["timestamp"]), "interactions", SOURCE)
    message = str(error.value)
    assert SOURCE in message and "timestamp" in message and "missing" in message


def test_string_in_count_names_file_column_and_rows():
    with pytest.raises(SchemaError) as error:
        validate_table(interactions(count=pa.array(["1", "2", "many", "4"])), "interactions", SOURCE)
    message = str(error.value)
    assert SOURCE in message and "'count'" in message
    assert "rows 2" in message and "'many'" in message


def test_lossy_int_cast_is_rejected_with_rows():
    table = interactions(count=pa.array([1, 2**40, 3, 2**41], pa.int64()))
    with pytest.raises(SchemaError) as error:
        validate_table(table, "interactions", SOURCE)
    message = str(error.value)
    assert SOURCE in message and "'count'" in message and "rows 1, 3" in message


def test_nulls_in_non_nullable_column_name_the_rows():
    table = interactions(user_id=pa.array(["u1", None, "u2", None], pa.string()))
    with pytest.raises(SchemaError) as error:
        validate_table(table, "interactions", SOURCE)
    message = str(error.value)
    assert SOURCE in message and "'user_id'" in message and "nulls" in message and "rows 1, 3" in message


def test_duplicate_track_ids():
    with pytest.raises(SchemaError) as error:
        validate_table(tracks(ids=("t1", "t2", "t1")), "tracks", "/cat/tracks.parquet")
    message = str(error.value)
    assert "/cat/tracks.parquet" in message and "track_id" in message and "duplicate" in message
    assert "rows 2" in message and "'t1'" in message


def test_duplicate_user_track_pair():
    table = interactions(user_id=pa.array(["u1", "u2", "u2", "u1"]), track_id=pa.array(["t1", "t1", "t2", "t1"]))
    with pytest.raises(SchemaError) as error:
        validate_table(table, "interactions", SOURCE)
    message = str(error.value)
    assert SOURCE in message and "user_id+track_id" in message and "rows 3" in message
    # the same track for different users, or different tracks for one user, are fine
    validate_table(interactions(), "interactions", SOURCE)


def test_unknown_track_references():
    table = interactions(track_id=pa.array(["t1", "t9", "t2", "t8"]))
    with pytest.raises(SchemaError) as error:
        check_references(table, "track_id", {"t1", "t2", "t3"}, SOURCE, "tracks")
    message = str(error.value)
    assert SOURCE in message and "'track_id'" in message and "unknown tracks" in message
    assert "rows 1, 3" in message and "'t9'" in message
    check_references(interactions(), "track_id", {"t1", "t2", "t3"}, SOURCE, "tracks")  # no error


def test_long_row_lists_are_abbreviated():
    n = 12
    table = interactions(
        user_id=pa.array([None] * n, pa.string()), track_id=pa.array([f"t{i}" for i in range(n)]),
        timestamp=pa.array([datetime(2024, 1, 1)] * n, pa.timestamp("us")), count=pa.array([1] * n, pa.int32()),
    )
    with pytest.raises(SchemaError, match=r"rows 0, 1, 2, 3, 4 and 7 more"):
        validate_table(table, "interactions", SOURCE)


def test_every_contract_accepts_its_own_empty_table():
    from catalog.schemas import SPECS

    for kind, spec in SPECS.items():
        assert validate_table(spec.schema.empty_table(), kind).num_rows == 0


def test_uncastable_type_names_file_and_column():
    table = interactions(count=pa.array([[1], [2], [3], [4]], pa.list_(pa.int32())))
    with pytest.raises(SchemaError) as error:
        validate_table(table, "interactions", SOURCE)
    message = str(error.value)
    assert SOURCE in message and "'count'" in message and "expected int32" in message
