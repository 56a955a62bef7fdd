"""Adapter for Music4All-Onion data → the `interactions`, `tracks` and `artists` contracts.

Listening has two sources: the data set's `userid_trackid_timestamp.tsv` (tab-separated `user_id`, `track_id`,
`timestamp` "YYYY-MM-DD HH:MM:SS", one row per play, header line optional) and the preprocessed `.pqt` splits of
the pretrained-audio-representations study (integer `user_id`/`track_id`, `timestamp`, `count`, plus a pandas
index column). Both become one row per user × track: the first play's timestamp and the number of plays.

`music4all_catalog` makes a whole catalog (tracks, artists, interactions) from the listening TSV, optionally the
data set's `id_information.csv` (artist and title per track) and a folder of its `<id>.mp3` clips; no audio is
needed.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from catalog.schemas import validate_table

TSV_COLUMNS = ("user_id", "track_id", "timestamp")
INFORMATION_COLUMNS = ("id", "artist", "song")  # required columns of id_information.csv (album_name is unused)
BATCH = "m4a"  # the catalog batch of every Music4All track
UNKNOWN_ARTIST_PREFIX = "artist:"  # artist_id of a track absent from id_information.csv: "artist:<track_id>"


def first_plays(plays: pl.DataFrame, counts: str | None = None) -> pl.DataFrame:
    """Collapse plays to the interactions contract: per user × track the earliest timestamp and the play count
    (the sum of column `counts` when given, else the number of rows). Sorted by user, timestamp, track."""
    count = pl.col(counts).sum() if counts else pl.len()
    table = (
        plays.group_by("user_id", "track_id")
        .agg(pl.col("timestamp").min(), count.cast(pl.Int32).alias("count"))
        .sort("user_id", "timestamp", "track_id")
    )
    return _contract(table, "interactions")


def _contract(table: pl.DataFrame, kind: str) -> pl.DataFrame:
    """`table` validated against the contract `kind` and cast to its exact schema."""
    return pl.from_arrow(validate_table(table.to_arrow(), kind))


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


def read_track_information(path: str | Path) -> pl.DataFrame:
    """Read Music4All's `id_information.csv` (tab-separated despite the name; header `id`, `artist`, `song`,
    `album_name`) into string columns track_id, artist_id (the artist name as given: the data set's only artist
    key) and title (the song); artist_id and title are null where empty. Raises ValueError naming the file and
    line for a missing column, an empty id or a repeated id."""
    path = Path(path)
    raw = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    missing = [c for c in INFORMATION_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: line 1: missing column(s) {missing}; expected tab-separated header "
                         f"{INFORMATION_COLUMNS + ('album_name',)}, found {raw.columns}")
    rows = raw.with_row_index("row")
    for problem, bad in (("empty id", pl.col("id").str.strip_chars().fill_null("") == ""),
                         ("repeated id", ~pl.col("id").is_first_distinct())):
        found = rows.filter(bad)
        if found.height:
            raise ValueError(f"{path}: line {int(found['row'][0]) + 2}: {problem} ({found.height} row(s) in all)")
    return raw.select(pl.col("id").alias("track_id"), pl.col("artist").alias("artist_id"),
                      pl.col("song").alias("title"))


def audio_names(track_ids: pl.Series, audio: str | Path | None) -> pl.Series:
    """Per track id, `<id>.mp3` (relative to the catalog root `audio`) when the file `<audio>/<id>.mp3` exists,
    else ""; all "" without `audio`. Raises FileNotFoundError when `audio` is not a folder."""
    present: set[str] = set()
    if audio is not None:
        if not Path(audio).is_dir():
            raise FileNotFoundError(f"{audio}: Music4All audio folder does not exist")
        present = {p.name for p in Path(audio).glob("*.mp3") if p.is_file()}
    return pl.Series("audio_path", [f"{t}.mp3" if f"{t}.mp3" in present else "" for t in track_ids], pl.String)


def music4all_tracks(track_ids: pl.Series, information: pl.DataFrame | None = None,
                     audio: str | Path | None = None) -> pl.DataFrame:
    """The `tracks` contract for the distinct `track_ids`, sorted. artist_id and title come from `information`
    (`read_track_information`); a track without an artist there gets "artist:<track_id>" (its own, new artist),
    one without a title its id. audio_path: see `audio_names`. duration_s 0.0, sample_rate 0, channels 0 and
    sha256 "" for every track, those with audio too: the embedding runner decodes the file itself. batch "m4a",
    tags empty, caption null."""
    if information is None:
        information = pl.DataFrame(schema={"track_id": pl.String, "artist_id": pl.String, "title": pl.String})
    table = pl.DataFrame({"track_id": track_ids.unique().sort()}).join(information, on="track_id", how="left")
    table = table.with_columns(
        pl.col("artist_id").fill_null(pl.lit(UNKNOWN_ARTIST_PREFIX) + pl.col("track_id")),
        pl.col("title").fill_null(pl.col("track_id")),
        audio_names(table["track_id"], audio),
        pl.lit(0.0, pl.Float32).alias("duration_s"),
        pl.lit(0, pl.Int32).alias("sample_rate"),
        pl.lit(0, pl.Int8).alias("channels"),
        pl.lit("").alias("sha256"),
        pl.lit(BATCH).alias("batch"),
        pl.lit([], pl.List(pl.String)).alias("tags"),
        pl.lit(None, pl.String).alias("caption"),
    )
    return _contract(table, "tracks")


def music4all_catalog(listening: str | Path, information: str | Path | None = None,
                      audio: str | Path | None = None) -> dict[str, pl.DataFrame]:
    """A whole catalog from Music4All-Onion files, no audio needed: the contract tables "tracks", "artists" and
    "interactions" (polars frames, validated).

    listening: `userid_trackid_timestamp.tsv` (`read_listening_tsv`). information: optional `id_information.csv`
    (`read_track_information`); its tracks join the listened ones. audio: optional folder of `<id>.mp3` clips,
    the catalog root of `audio_path`. Tracks are described in `music4all_tracks`; artists are the distinct
    artist ids, each named by its id.
    """
    interactions = read_listening_tsv(listening)
    info = read_track_information(information) if information is not None else None
    track_ids = interactions["track_id"] if info is None else pl.concat([interactions["track_id"], info["track_id"]])
    tracks = music4all_tracks(track_ids, info, audio)
    artists = tracks.select("artist_id", pl.col("artist_id").alias("name")).unique("artist_id").sort("artist_id")
    return {"tracks": tracks, "artists": _contract(artists, "artists"), "interactions": interactions}
