"""Long tracks in bounded memory: a track over the threshold is decoded and embedded chunk by chunk, its vector
the length-weighted mean of the chunk vectors; under a data-size limit that whole-track decoding breaks, a
20-minute 44.1 kHz stereo file embeds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from conftest import REPO_ROOT

from embedders.audio import chunk_starts
from embedders.handcrafted import HandcraftedEmbedder
from embedders.runner import LongTracks, embed_catalog, embed_tracks

LIMITED = """
import resource, sys
import polars as pl
from embedders.handcrafted import HandcraftedEmbedder
from embedders.runner import LongTracks, embed_tracks
data = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmData"))
limit = data + int(sys.argv[2]) * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
tracks = pl.DataFrame({"track_id": ["long"], "audio_path": ["long.wav"]})
result = embed_tracks(HandcraftedEmbedder(), tracks, sys.argv[1], long=LongTracks(threshold_s=float(sys.argv[3])))
print("embedded", result.vectors.ids, result.failures["error"].to_list())
"""


def write_long(path: Path, minutes: float, sample_rate: int = 44100) -> Path:
    """A stereo tone with a slow vibrato, written 10 s at a time (the test never holds it whole)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", sample_rate, 2, subtype="PCM_16") as handle:
        for start in range(0, int(minutes * 60), 10):
            t = np.arange(sample_rate * 10) / sample_rate + start
            wave = 0.3 * np.sin(2 * np.pi * (220 + 20 * np.sin(t / 30)) * t)
            handle.write((wave[:, None] + 0.01 * rng.standard_normal((len(t), 2))).astype(np.float32))
    return path


def test_chunk_starts():
    assert chunk_starts(100, 10, None) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert chunk_starts(100, 10, 3) == [0, 40, 90]  # spread evenly, first and last included
    assert chunk_starts(95, 10, 20) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert chunk_starts(0, 10, None) == [0]


def test_chunked_vector_matches_the_whole_track(tmp_path):
    """A stationary tone: the mean of its 10 s chunk vectors is the whole track's vector, nearly."""
    write_long(tmp_path / "long.wav", minutes=0.5)
    tracks = pl.DataFrame({"track_id": ["long"], "audio_path": ["long.wav"]})
    whole = embed_tracks(HandcraftedEmbedder(), tracks, tmp_path).vectors.matrix[0]
    chunked = embed_tracks(HandcraftedEmbedder(), tracks, tmp_path,
                           long=LongTracks(threshold_s=10, chunk_s=10)).vectors.matrix[0]
    cosine = float(whole @ chunked / np.linalg.norm(whole) / np.linalg.norm(chunked))
    assert cosine > 0.99 and not np.allclose(whole, chunked)  # close, but it did take the chunked path


def test_policy_is_recorded_and_part_of_the_fingerprint(tmp_path):
    write_long(tmp_path / "long.wav", minutes=0.4)
    tracks = pl.DataFrame({"track_id": ["long"], "audio_path": ["long.wav"], "batch": ["b0"], "sha256": ["x"]})
    out = tmp_path / "out"
    policy = LongTracks(threshold_s=5, chunk_s=5, max_chunks=2)
    assert embed_catalog(HandcraftedEmbedder(), tracks, tmp_path, out, long=policy).embedded == ["b0"]
    meta = pq_metadata(out / "b0.parquet")
    assert meta["long_tracks"] == "tracks over 5 s: 5 s chunks (2 chunks spread evenly), length-weighted mean of " \
                                  "the chunk vectors"
    assert embed_catalog(HandcraftedEmbedder(), tracks, tmp_path, out, long=policy).skipped == ["b0"]
    assert embed_catalog(HandcraftedEmbedder(), tracks, tmp_path, out, long=LongTracks(5, 5, 3)).embedded == ["b0"]


def pq_metadata(path: Path) -> dict[str, str]:
    from catalog.io import read_metadata

    return read_metadata(path)


@pytest.mark.slow
def test_a_20_minute_stereo_file_embeds_under_a_memory_limit(tmp_path):
    write_long(tmp_path / "long.wav", minutes=20)

    def run(threshold_s: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path), "600", str(threshold_s)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)

    chunked = run(600)  # the default policy: chunks for tracks over 10 minutes
    assert chunked.returncode == 0, chunked.stderr[-2000:]
    assert "embedded ['long'] []" in chunked.stdout
    whole = run(1e9)  # the same file decoded whole: the limit bites
    assert "embedded ['long'] []" not in whole.stdout and "MemoryError" in whole.stdout + whole.stderr


@pytest.mark.slow
def test_a_memory_budget_fails_the_step_that_exceeds_it_by_name(tmp_path):
    """`memory_budget_mb`: a 2-minute 192 kHz 8-channel file (under the long-track threshold, so decoded whole:
    about 740 MB of float32) exceeds a 1,500 MB budget of a process that starts near 900 MB; the embedding
    step fails naming the budget and `musicrec run` exits 1, instead of the machine running out of memory."""
    import yaml

    folder = tmp_path / "music" / "b000"
    folder.mkdir(parents=True)
    with sf.SoundFile(str(folder / "wide.wav"), "w", 192000, 8, subtype="PCM_16") as handle:
        for _ in range(12):  # 12 x 10 s
            handle.write(np.random.default_rng(0).uniform(-0.3, 0.3, (1_920_000, 8)).astype(np.float32))
    experiment = {"name": "budget", "storage": str(tmp_path / "out"), "memory_budget_mb": 1500,
                  "catalog": {"kind": "folder", "folder": str(tmp_path / "music")},
                  "backbones": {"handcrafted": {}}}
    (tmp_path / "budget.yaml").write_text(yaml.safe_dump(experiment))
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(tmp_path / "budget.yaml")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "step embeddings_handcrafted.embed_handcrafted[b000]: " in run.stderr
    assert "(over the experiment's memory_budget_mb)" in run.stderr
