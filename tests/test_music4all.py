"""Music4All-Onion adapter: a TSV fixture written in the data set's format, and the shared real split."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from catalog.music4all import read_listening_tsv, read_split_parquet

CONTRACT = {"user_id": pl.String, "track_id": pl.String, "timestamp": pl.Datetime("us"), "count": pl.Int32}
VAL = Path("/work/shared/data/music4all_onion/val.pqt")
TSV = (
    "user_id\ttrack_id\ttimestamp\n"
    "user_007XIjOr\t04D5bjD4a81V2rEB\t2019-02-20 14:29:31\n"
    "user_007XIjOr\t0Ap4RbbjKKKBvXDm\t2019-02-20 14:25:10\n"
    "user_007XIjOr\t04D5bjD4a81V2rEB\t2019-02-03 09:00:00\n"
    "user_00FlA5Q4\t04D5bjD4a81V2rEB\t2019-02-21 23:59:59\n"
)


def test_tsv_collapses_plays_to_first_play_and_count(tmp_path):
    path = tmp_path / "userid_trackid_timestamp.tsv"
    path.write_text(TSV)
    table = read_listening_tsv(path)
    assert dict(table.schema) == CONTRACT
    assert table.rows() == [
        ("user_007XIjOr", "04D5bjD4a81V2rEB", datetime(2019, 2, 3, 9, 0, 0), 2),
        ("user_007XIjOr", "0Ap4RbbjKKKBvXDm", datetime(2019, 2, 20, 14, 25, 10), 1),
        ("user_00FlA5Q4", "04D5bjD4a81V2rEB", datetime(2019, 2, 21, 23, 59, 59), 1),
    ]


def test_tsv_without_header_reads_the_same(tmp_path):
    with_header, without = tmp_path / "a.tsv", tmp_path / "b.tsv"
    with_header.write_text(TSV)
    without.write_text(TSV.split("\n", 1)[1])
    assert read_listening_tsv(with_header).equals(read_listening_tsv(without))


def test_tsv_errors_name_the_problem(tmp_path):
    bad_time = tmp_path / "bad_time.tsv"
    bad_time.write_text(TSV + "user_x\ttrack_y\tyesterday\n")
    with pytest.raises(ValueError, match=r"line 6 \('yesterday'\)"):
        read_listening_tsv(bad_time)
    bad_columns = tmp_path / "bad_columns.tsv"
    bad_columns.write_text("user_id,track_id,timestamp\n")
    with pytest.raises(ValueError, match="tab-separated"):
        read_listening_tsv(bad_columns)


def test_split_parquet_fixture(tmp_path):
    path = tmp_path / "split.pqt"
    pl.DataFrame({
        "user_id": [20, 20, 7], "track_id": [2432, 6652, 2432],
        "timestamp": [datetime(2019, 2, 16, 10, 49, 45), datetime(2019, 2, 16, 12, 33, 40), datetime(2019, 2, 1)],
        "count": [3, 1, 1], "__index_level_0__": [5092, 5112, 1],
    }).with_columns(pl.col("timestamp").cast(pl.Datetime("ns"))).write_parquet(path)
    table = read_split_parquet(path)
    assert dict(table.schema) == CONTRACT
    assert table.rows() == [
        ("20", "2432", datetime(2019, 2, 16, 10, 49, 45), 3),
        ("20", "6652", datetime(2019, 2, 16, 12, 33, 40), 1),
        ("7", "2432", datetime(2019, 2, 1), 1),
    ]


@pytest.mark.skipif(not VAL.exists(), reason=f"{VAL} absent (real Music4All-Onion split)")
def test_real_validation_split():
    table = read_split_parquet(VAL)
    assert dict(table.schema) == CONTRACT
    assert (table.height, table["user_id"].n_unique(), table["track_id"].n_unique()) == (48_787, 2_459, 23_625)
    assert table["timestamp"].min() >= datetime(2019, 2, 1) and table["timestamp"].max() < datetime(2019, 3, 1)
    assert table["count"].min() >= 1
