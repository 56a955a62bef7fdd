"""Adapter for Music4All-Onion listening data → the `interactions` contract.

Two sources: the data set's `userid_trackid_timestamp.tsv` (tab-separated `user_id`, `track_id`, `timestamp`
"YYYY-MM-DD HH:MM:SS", one row per play, header line optional) and the preprocessed `.pqt` splits of the
pretrained-audio-representations study (integer `user_id`/`track_id`, `timestamp`, `count`, plus a pandas
index column). Both become one row per user × track: the first play's timestamp and the number of plays.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from catalog.schemas import validate_table

TSV_COLUMNS = ("user_id", "track_id", "timestamp")


def first_plays(plays: pl.DataFrame, counts: str | None = None) -> pl.DataFrame:
    """Collapse plays to the interactions contract: per user × track the earliest timestamp and the play count
    (the sum of column `counts` when given, else the number of rows). Sorted by user, timestamp, track."""
    count = pl.col(counts).sum() if counts else pl.len()
    table = (
        plays.group_by("user_id", "track_id")
        .agg(pl.col("timestamp").min(), count.cast(pl.Int32).alias("count"))
        .sort("user_id", "timestamp", "track_id")
    )
    return pl.from_arrow(validate_table(table.to_arrow(), "interactions"))


def read_listening_tsv(path: str | Path) -> pl.DataFrame:
    """Read `userid_trackid_timestamp.tsv` into the interactions contract (ids kept as strings)."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().rstrip("\n").split("\t")
    if len(first) != len(TSV_COLUMNS):
        raise ValueError(f"{path}: expected {len(TSV_COLUMNS)} tab-separated columns {TSV_COLUMNS}, "
                         f"first line has {len(first)}")
    has_header = first[0] == "user_id"
    raw = pl.read_csv(path, separator="\t", has_header=has_header, new_columns=list(TSV_COLUMNS),
                      schema_overrides={c: pl.String for c in TSV_COLUMNS}, quote_char=None)
    plays = raw.with_columns(pl.col("timestamp").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False))
    bad = plays.with_row_index("row").filter(pl.col("timestamp").is_null())
    if bad.height:
        row = int(bad["row"][0]) + (2 if has_header else 1)
        raise ValueError(f"{path}: {bad.height} unreadable timestamp(s), first on line {row} "
                         f"({raw['timestamp'][int(bad['row'][0])]!r}); expected YYYY-MM-DD HH:MM:SS")
    return first_plays(plays)


def read_split_parquet(path: str | Path) -> pl.DataFrame:
    """Read a preprocessed `.pqt` split (e.g. `val.pqt`) into the interactions contract."""
    path = Path(path)
    raw = pl.read_parquet(path)
    missing = [c for c in ("user_id", "track_id", "timestamp", "count") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    plays = raw.select(
        pl.col("user_id").cast(pl.String),
        pl.col("track_id").cast(pl.String),
        pl.col("timestamp").cast(pl.Datetime("us")),
        pl.col("count"),
    )
    return first_plays(plays, counts="count")
