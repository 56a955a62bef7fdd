"""Failure reasons a user understands: a file that does not decode is described by what it is."""
from __future__ import annotations

import pytest
from conftest import write_corrupt, write_empty_file, write_sine

from catalog.ingest import ingest_folder
from catalog.sniff import describe
from embedders.audio import AudioDecodeError, load_mono


def test_descriptions(tmp_path):
    (tmp_path / "notes.mp3").write_text("Tracklist for tonight:\n1. Intro\n")
    (tmp_path / "cover.flac").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    write_empty_file(tmp_path / "empty.wav")
    write_corrupt(tmp_path / "noise.ogg", n_bytes=256)
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    assert describe(tmp_path / "notes.mp3") == "a text file, not audio (it starts 'Tracklist for tonight:\\n1. Intro')"
    assert describe(tmp_path / "cover.flac") == "a PNG image, not audio"
    assert describe(tmp_path / "empty.wav") == "an empty file (0 bytes)"
    assert describe(tmp_path / "noise.ogg").startswith("not an audio format soundfile reads (256 bytes, starting ")
    assert describe(tmp_path / "dangling.wav") == "the file does not exist (or is a broken link)"
    assert describe(tmp_path) == "not a regular file"


def test_decoder_and_ingest_name_a_text_file(tmp_path):
    folder = tmp_path / "music"
    write_sine(folder / "b000" / "tone.wav", seconds=0.5)
    (folder / "b000" / "readme.mp3").write_text("not a song")
    with pytest.raises(AudioDecodeError, match=r"readme\.mp3: cannot decode audio: a text file, not audio"):
        load_mono(folder / "b000" / "readme.mp3", 16000)
    result = ingest_folder(folder)
    assert result.tracks["track_id"].to_list() == ["b000/tone"]
    (reason,) = result.failures["error"].to_list()
    assert "readme.mp3" in reason and "a text file, not audio (it starts 'not a song')" in reason
