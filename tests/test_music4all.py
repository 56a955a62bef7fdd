"""Music4All-Onion adapter: fixtures written in the data set's formats, and the shared real split."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from music4all_fixture import write_music4all_fixture

from catalog.music4all import music4all_catalog, read_listening_tsv, read_split_parquet
from catalog.schemas import SPECS

CONTRACT = {"user_id": pl.String, "track_id": pl.String, "timestamp": pl.Datetime("us"), "count": pl.Int32}
CUTOFF = datetime(2019, 2, 1)
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


def _schema_of(kind: str) -> dict:
    return dict(pl.from_arrow(SPECS[kind].schema.empty_table()).schema)


def test_catalog_from_fixture_files(tmp_path):
    paths = write_music4all_fixture(tmp_path)
    catalog = music4all_catalog(paths["listening"], paths["information"])
    assert {kind: dict(table.schema) for kind, table in catalog.items()} == {
        kind: _schema_of(kind) for kind in ("tracks", "artists", "interactions")}
    tracks, interactions = catalog["tracks"], catalog["interactions"]
    assert (tracks.height, catalog["artists"].height, interactions["user_id"].n_unique()) == (80, 12, 60)
    assert tracks["artist_id"].unique().sort().to_list() == [f"Fixture Artist {a:02d}" for a in range(12)]
    assert catalog["artists"]["name"].equals(catalog["artists"]["artist_id"], check_names=False)
    assert set(tracks["batch"]) == {"m4a"} and set(tracks["audio_path"]) == {""}
    features = pl.read_csv(paths["features"], separator="\t")
    assert features.columns == ["id"] + [f"f{d}" for d in range(16)]
    assert sorted(features["id"]) == tracks["track_id"].to_list()

    train = interactions.filter(pl.col("timestamp") < CUTOFF)
    later = interactions.filter(pl.col("timestamp") >= CUTOFF)
    new = later.join(train, on="track_id", how="anti").join(tracks, on="track_id")
    assert new["track_id"].n_unique() == 15
    cold_artists = set(new["artist_id"]) - set(train.join(tracks, on="track_id")["artist_id"])
    assert len(cold_artists) == 2
    assert later["user_id"].is_in(train["user_id"].implode()).all()
    assert later["timestamp"].max() < datetime(2019, 3, 1)
    assert train["count"].sum() > 3 * later["count"].sum()  # most plays are in training


def test_fixture_is_deterministic(tmp_path):
    first, second = write_music4all_fixture(tmp_path / "a"), write_music4all_fixture(tmp_path / "b")
    assert all(first[k].read_bytes() == second[k].read_bytes() for k in first)
    third = write_music4all_fixture(tmp_path / "c", seed=1)
    assert first["listening"].read_bytes() != third["listening"].read_bytes()


def test_catalog_without_information_gives_each_track_its_own_artist(tmp_path):
    paths = write_music4all_fixture(tmp_path)
    tracks = music4all_catalog(paths["listening"])["tracks"]
    assert tracks.height == 80
    assert tracks["artist_id"].to_list() == ["artist:" + t for t in tracks["track_id"]]
    assert tracks["title"].equals(tracks["track_id"], check_names=False)


def test_malformed_information_file_names_the_file_and_line(tmp_path):
    listening = tmp_path / "userid_trackid_timestamp.tsv"
    listening.write_text(TSV)
    no_artist = tmp_path / "id_information.csv"
    no_artist.write_text("id\tsong\talbum_name\n04D5bjD4a81V2rEB\tSong\tAlbum\n")
    with pytest.raises(ValueError, match=rf"{no_artist}: line 1: missing column\(s\) \['artist'\]"):
        music4all_catalog(listening, no_artist)
    empty_id = tmp_path / "empty_id.csv"
    empty_id.write_text("id\tartist\tsong\talbum_name\n04D5bjD4a81V2rEB\tA\tS\tB\n\tA\tS\tB\n")
    with pytest.raises(ValueError, match=rf"{empty_id}: line 3: empty id"):
        music4all_catalog(listening, empty_id)
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("id\tartist\tsong\talbum_name\n" + "04D5bjD4a81V2rEB\tA\tS\tB\n" * 2)
    with pytest.raises(ValueError, match=rf"{repeated}: line 3: repeated id"):
        music4all_catalog(listening, repeated)


def test_audio_path_only_for_existing_mp3(tmp_path):
    paths = write_music4all_fixture(tmp_path)
    ids = music4all_catalog(paths["listening"])["tracks"]["track_id"].to_list()
    audio = tmp_path / "audio"
    audio.mkdir()
    for track in ids[:2]:
        (audio / f"{track}.mp3").write_bytes(b"not really an mp3")
    (audio / f"{ids[2]}.wav").write_bytes(b"other format")
    tracks = music4all_catalog(paths["listening"], paths["information"], audio)["tracks"]
    assert dict(zip(tracks["track_id"], tracks["audio_path"])) == {
        t: f"{t}.mp3" if t in ids[:2] else "" for t in ids}


def test_tiny_catalog_exact_tables(tmp_path):
    listening = tmp_path / "userid_trackid_timestamp.tsv"
    listening.write_text("user_id\ttrack_id\ttimestamp\n"
                         "user_b\tTRACKbbbbbbbbbbb\t2019-02-02 08:00:00\n"
                         "user_a\tTRACKaaaaaaaaaaa\t2019-01-05 10:00:00\n"
                         "user_a\tTRACKaaaaaaaaaaa\t2018-12-31 23:00:00\n")
    information = tmp_path / "id_information.csv"
    information.write_text('id\tartist\tsong\talbum_name\n'
                           'TRACKaaaaaaaaaaa\tQueen\tSay "Hi", World\tAlbum\n'
                           'TRACKccccccccccc\tQueen\tUnplayed\t\n')
    catalog = music4all_catalog(listening, information)
    common = (0.0, 0, 0, "", "m4a", [], None)
    assert catalog["tracks"].rows() == [
        ("TRACKaaaaaaaaaaa", "Queen", 'Say "Hi", World', "") + common,
        ("TRACKbbbbbbbbbbb", "artist:TRACKbbbbbbbbbbb", "TRACKbbbbbbbbbbb", "") + common,
        ("TRACKccccccccccc", "Queen", "Unplayed", "") + common,
    ]
    assert catalog["artists"].rows() == [("Queen", "Queen"), ("artist:TRACKbbbbbbbbbbb", "artist:TRACKbbbbbbbbbbb")]
    assert catalog["interactions"].rows() == [
        ("user_a", "TRACKaaaaaaaaaaa", datetime(2018, 12, 31, 23, 0, 0), 2),
        ("user_b", "TRACKbbbbbbbbbbb", datetime(2019, 2, 2, 8, 0, 0), 1),
    ]
