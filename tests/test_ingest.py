"""Folder ingestion: good files become tracks, bad ones become failures with a reason, the batch goes on."""
from __future__ import annotations

import hashlib

import polars as pl
import pytest
from conftest import write_corrupt, write_empty_file, write_header_only, write_silent, write_sine

from catalog.ingest import ingest_folder
from catalog.schemas import SchemaError, validate_table


@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "music"
    write_sine(root / "top.wav", seconds=1.0, sample_rate=22050)
    write_sine(root / "rock" / "stereo.flac", seconds=2.0, sample_rate=16000, channels=2, freq=220)
    write_sine(root / "rock" / "mono44.wav", seconds=0.5, sample_rate=44100, freq=880)
    write_corrupt(root / "rock" / "corrupt.wav")
    write_empty_file(root / "rock" / "zero.flac")
    write_header_only(root / "jazz" / "noframes.wav")
    write_silent(root / "jazz" / "silence.wav")
    (root / "notes.txt").write_text("not audio, not listed")
    return root


def test_good_files_become_tracks_bad_files_become_failures(mixed_folder):
    result = ingest_folder(mixed_folder)
    tracks = result.tracks
    assert tracks["track_id"].to_list() == ["rock/mono44", "rock/stereo", "top"]  # sorted; .txt ignored
    validate_table(tracks.to_arrow(), "tracks")
    validate_table(result.failures.to_arrow(), "failures")
    rows = {r["track_id"]: r for r in tracks.iter_rows(named=True)}

    stereo = rows["rock/stereo"]
    assert stereo["audio_path"] == "rock/stereo.flac"
    assert stereo["sample_rate"] == 16000 and stereo["channels"] == 2
    assert stereo["duration_s"] == pytest.approx(2.0, abs=1e-4)
    assert stereo["sha256"] == hashlib.sha256((mixed_folder / "rock/stereo.flac").read_bytes()).hexdigest()
    assert stereo["batch"] == "rock" and stereo["artist_id"] == "unknown" and stereo["title"] == "stereo"
    assert stereo["tags"] == [] and stereo["caption"] is None

    mono = rows["rock/mono44"]
    assert (mono["sample_rate"], mono["channels"]) == (44100, 1)
    assert mono["duration_s"] == pytest.approx(0.5, abs=1e-4)
    assert rows["top"]["batch"] == "default"
    assert rows["top"]["sha256"] == hashlib.sha256((mixed_folder / "top.wav").read_bytes()).hexdigest()
    assert len({r["sha256"] for r in rows.values()}) == 3

    failures = {r["track_id"]: r for r in result.failures.iter_rows(named=True)}
    assert set(failures) == {"rock/corrupt", "rock/zero", "jazz/noframes", "jazz/silence"}
    assert all(f["stage"] == "ingest" for f in failures.values())
    assert "unreadable" in failures["rock/corrupt"]["error"]
    assert failures["rock/corrupt"]["error"].startswith("rock/corrupt.wav:")
    assert "unreadable" in failures["rock/zero"]["error"] or "empty" in failures["rock/zero"]["error"]
    assert "empty" in failures["jazz/noframes"]["error"]
    assert "silent" in failures["jazz/silence"]["error"]


def test_metadata_csv_overrides_defaults(mixed_folder, tmp_path):
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text(
        "audio_path,track_id,artist_id,title,batch,tags,caption\n"
        "rock/stereo.flac,trk-1,art-9,Stereo Song,release-2,rock; loud ;;guitar,A loud stereo tone.\n"
        "top.wav,,,,,,\n"  # empty cells keep the defaults
        "missing/gone.wav,trk-gone,art-1,Gone,b,,\n"
    )
    result = ingest_folder(mixed_folder, csv_path)
    rows = {r["track_id"]: r for r in result.tracks.iter_rows(named=True)}
    assert set(rows) == {"trk-1", "top", "rock/mono44"}
    song = rows["trk-1"]
    assert (song["artist_id"], song["title"], song["batch"]) == ("art-9", "Stereo Song", "release-2")
    assert song["tags"] == ["rock", "loud", "guitar"] and song["caption"] == "A loud stereo tone."
    assert song["audio_path"] == "rock/stereo.flac" and song["channels"] == 2
    assert (rows["top"]["artist_id"], rows["top"]["batch"], rows["top"]["caption"]) == ("unknown", "default", None)
    failures = {r["track_id"]: r["error"] for r in result.failures.iter_rows(named=True)}
    assert "not found" in failures["trk-gone"] and "missing/gone.wav" in failures["trk-gone"]
    assert "silent" in failures["jazz/silence"]  # listed or not, bad files still fail with their reason


def test_csv_without_audio_path_names_the_file(mixed_folder, tmp_path):
    csv_path = tmp_path / "broken_meta.csv"
    csv_path.write_text("file,artist_id\ntop.wav,a\n")
    with pytest.raises(SchemaError, match=r"broken_meta\.csv.*audio_path"):
        ingest_folder(mixed_folder, csv_path)


def test_csv_with_duplicate_audio_path_names_the_line(mixed_folder, tmp_path):
    csv_path = tmp_path / "dup.csv"
    csv_path.write_text("audio_path,track_id\ntop.wav,a\ntop.wav,b\n")
    with pytest.raises(SchemaError, match=r"dup\.csv: line 3: duplicate audio_path 'top.wav'"):
        ingest_folder(mixed_folder, csv_path)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest_folder(tmp_path / "nowhere")


def test_folder_with_only_bad_files_gives_empty_valid_tracks(tmp_path):
    write_corrupt(tmp_path / "a.wav")
    result = ingest_folder(tmp_path)
    assert result.tracks.height == 0 and result.tracks.schema["tags"] == pl.List(pl.String)
    validate_table(result.tracks.to_arrow(), "tracks")
    assert result.failures["track_id"].to_list() == ["a"]


def test_unchanged_files_are_not_decoded_again(tmp_path):
    """The ingest cache: a second scan decodes only new or changed files. Proof without mocks: an old file
    overwritten with garbage of the same size and the same mtime is trusted, not re-read."""
    import os


    folder = tmp_path / "music"
    for i in range(3):
        write_sine(folder / "b000" / f"tone{i}.wav", seconds=0.3, freq=220.0 * (i + 1))
    cache = tmp_path / "ingest_cache.parquet"
    first = ingest_folder(folder, cache=cache)
    assert first.decoded == 3 and first.tracks.height == 3

    old = folder / "b000" / "tone0.wav"
    stat = old.stat()
    old.write_bytes(b"\0" * stat.st_size)
    os.utime(old, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    write_sine(folder / "b001" / "tone9.wav", seconds=0.3)
    second = ingest_folder(folder, cache=cache)
    assert second.decoded == 1  # only the new file
    assert second.tracks["track_id"].to_list() == ["b000/tone0", "b000/tone1", "b000/tone2", "b001/tone9"]
    assert second.tracks.filter(pl.col("track_id") == "b000/tone0")["sha256"].item() == \
        first.tracks.filter(pl.col("track_id") == "b000/tone0")["sha256"].item()

    os.utime(old)  # touched: its content is hashed again, found changed, and decoded (and fails)
    write_sine(folder / "b000" / "tone1.wav", seconds=0.3, freq=440.0)  # rewritten with the same content
    third = ingest_folder(folder, cache=cache)
    assert third.decoded == 1
    assert third.failures["track_id"].to_list() == ["b000/tone0"]
    assert "b000/tone1" in third.tracks["track_id"].to_list()


def test_non_finite_samples_fail_ingestion(tmp_path):
    import numpy as np
    import soundfile as sf


    folder = tmp_path / "music"
    write_sine(folder / "b000" / "ok.wav", seconds=0.2)
    wave = np.full(4410, 0.1, np.float32)
    wave[100] = np.nan
    sf.write(str(folder / "b000" / "nan.wav"), wave, 22050, subtype="FLOAT")
    result = ingest_folder(folder)
    assert result.tracks["track_id"].to_list() == ["b000/ok"]
    assert result.failures["error"].to_list() == ["b000/nan.wav: non-finite audio: NaN or inf samples after 0.0 s"]
