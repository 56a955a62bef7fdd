"""A folder of awkward files, generated here: every bad file gives one failure row whose reason a user
understands, and every good file is embedded by every backbone of the experiment."""
from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from conftest import write_corrupt, write_empty_file, write_header_only, write_silent, write_sine

from assets.experiment import parse_experiment
from embedders.runner import read_backbone, read_backbone_failures
from pipelines.definitions import build_definitions

pytestmark = pytest.mark.slow

BAD = {  # file -> words its failure reason must hold
    "empty.wav": "an empty file (0 bytes)",
    "header_only.wav": "empty audio: no samples",
    "truncated.flac": "unreadable audio",
    "notes.mp3": "a text file, not audio",
    "cover.ogg": "a PNG image, not audio",
    "silent.wav": "silent audio",
    "nan.wav": "non-finite audio: NaN or inf samples",
    "random_bytes.ogg": "not an audio format soundfile reads",
    "escape.wav": "outside the catalog folder",
}
GOOD = ["eight_channels.wav", "rate_192k.wav", "rate_8k.wav", "blip_0.05s.wav", "clipped.wav", "ünïcödé ♪.flac",
        "stereo.ogg", "tone.flac"]


def write_folder(root, outside):
    batch = root / "b000"
    write_empty_file(batch / "empty.wav")
    write_header_only(batch / "header_only.wav")
    write_sine(outside / "full.flac", seconds=2.0)
    batch.mkdir(parents=True, exist_ok=True)
    (batch / "truncated.flac").write_bytes((outside / "full.flac").read_bytes()[:200])
    (batch / "notes.mp3").write_text("Setlist:\n1. Intro\n2. Outro\n")
    (batch / "cover.ogg").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    write_silent(batch / "silent.wav")
    wave = np.full(8000, 0.2, np.float32)
    wave[500] = np.nan
    sf.write(str(batch / "nan.wav"), wave, 16000, subtype="FLOAT")
    write_corrupt(batch / "random_bytes.ogg")
    (batch / "escape.wav").symlink_to(outside / "full.flac")
    write_sine(batch / "eight_channels.wav", seconds=1.0, channels=8)
    write_sine(batch / "rate_192k.wav", seconds=1.0, sample_rate=192000)
    write_sine(batch / "rate_8k.wav", seconds=1.0, sample_rate=8000, freq=300.0)
    write_sine(batch / "blip_0.05s.wav", seconds=0.05)
    write_sine(batch / "clipped.wav", seconds=1.0, amplitude=4.0)
    write_sine(batch / "ünïcödé ♪.flac", seconds=1.0, freq=660.0)
    write_sine(batch / "stereo.ogg", seconds=1.0, channels=2, sample_rate=44100)
    write_sine(batch / "tone.flac", seconds=1.5, freq=880.0)


def test_every_bad_file_is_named_and_every_good_file_embedded(tmp_path):
    write_folder(tmp_path / "music", tmp_path / "elsewhere")
    experiment = parse_experiment({
        "name": "awkward", "storage": str(tmp_path / "out"),
        "catalog": {"kind": "folder", "folder": str(tmp_path / "music")},
        "backbones": {"random": {}, "handcrafted": {}, "musicnn_mtt": {}}})
    result = build_definitions(experiment).resolve_job_def("embed").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    failures = pl.read_parquet(tmp_path / "out" / "tables" / "catalog_failures.parquet")
    reasons = dict(zip(failures["track_id"].to_list(), failures["error"].to_list()))
    assert sorted(reasons) == sorted(f"b000/{name.rsplit('.', 1)[0]}" for name in BAD)
    for name, words in BAD.items():
        reason = reasons[f"b000/{name.rsplit('.', 1)[0]}"]
        assert reason.startswith(f"b000/{name}: ") and words in reason, reason
    good = sorted(f"b000/{name.rsplit('.', 1)[0]}" for name in GOOD)
    for table in ("random", "handcrafted", "musicnn_mtt"):
        folder = tmp_path / "out" / "embeddings" / table
        assert sorted(read_backbone(folder).ids) == good, table
        assert read_backbone_failures(folder).is_empty(), table
