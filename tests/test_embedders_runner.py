"""The random and handcrafted backbones and the embedding runner (failures per track, incremental batches)."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
from conftest import write_corrupt, write_sine

from catalog.io import read_metadata, read_table
from embedders.base import Embedder, create_embedder
from embedders.handcrafted import HandcraftedEmbedder
from embedders.random_baseline import RandomEmbedder
from embedders.runner import embed_catalog, embed_tracks, embedding_files, read_backbone, read_backbone_failures

SR = 8000


class ToyEmbedder:
    """Cheap deterministic features (peak, RMS, length, mean) of each waveform; counts what it embeds.
    `poison` amplitude makes `embed` raise; `nan_amplitude` makes it return NaN for that track."""

    name = "toy"
    sample_rate = SR
    dim = 4

    def __init__(self, version: str = "1", poison: float | None = None, nan_amplitude: float | None = None):
        self.version = version
        self.poison = poison
        self.nan_amplitude = nan_amplitude
        self.calls: list[int] = []  # batch sizes seen by embed

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        self.calls.append(len(waveforms))
        rows = []
        for wave in waveforms:
            peak = float(np.abs(wave).max())
            if self.poison is not None and abs(peak - self.poison) < 0.02:
                raise RuntimeError("model cannot handle this waveform")
            value = np.nan if self.nan_amplitude is not None and abs(peak - self.nan_amplitude) < 0.02 else 0.0
            rows.append([peak, float(np.sqrt(np.mean(wave**2))), wave.size / self.sample_rate, value])
        return np.asarray(rows, np.float32).reshape(len(rows), self.dim)

    def provenance(self) -> dict[str, str]:
        return {"weights_sha256": "none", "policy": "toy"}

    @property
    def embedded(self) -> int:
        return sum(self.calls)


def make_tracks(root, spec: dict[str, tuple[str, float]], corrupt: Sequence[str] = ()) -> pl.DataFrame:
    """spec: track_id -> (batch, amplitude of a 0.5 s sine). `corrupt` ids get random bytes instead."""
    rows = []
    for i, (track_id, (batch, amplitude)) in enumerate(spec.items()):
        path = root / batch / f"{track_id}.wav"
        if track_id in corrupt:
            write_corrupt(path, seed=i)
        else:
            write_sine(path, seconds=0.5, sample_rate=SR, freq=200 + 50 * i, amplitude=amplitude)
        rows.append({"track_id": track_id, "audio_path": f"{batch}/{track_id}.wav", "batch": batch,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return pl.DataFrame(rows)


def test_toy_embedder_satisfies_the_protocol():
    assert isinstance(ToyEmbedder(), Embedder)
    assert isinstance(HandcraftedEmbedder(), Embedder)


def vectors_of(embedder: RandomEmbedder, ids: list[str]) -> np.ndarray:
    """The random backbone's vectors of `ids`, checking that it has one for every id (no failures)."""
    matrix, missing = embedder.embed_ids(ids)
    assert missing == {}
    return matrix


def test_random_backbone_deterministic_per_id_and_seed():
    embedder = create_embedder("random", dim=16, seed=3)
    assert isinstance(embedder, RandomEmbedder) and embedder.needs_audio is False
    result = embedder.embed_ids(["t1", "t2", "t3"])
    assert isinstance(result, tuple) and len(result) == 2 and result[1] == {}
    first = result[0]
    assert first.shape == (3, 16) and first.dtype == np.float32
    np.testing.assert_array_equal(vectors_of(embedder, ["t3", "t1"]), first[[2, 0]])  # per id, not per position
    np.testing.assert_array_equal(vectors_of(RandomEmbedder(dim=16, seed=3), ["t2"])[0], first[1])
    assert not np.allclose(vectors_of(RandomEmbedder(dim=16, seed=4), ["t1"])[0], first[0])
    assert not np.allclose(first[0], first[1])
    many = vectors_of(RandomEmbedder(dim=64), [f"t{i}" for i in range(200)])
    assert abs(many.mean()) < 0.05 and abs(many.std() - 1.0) < 0.05  # standard normal
    with pytest.raises(TypeError):
        embedder.embed([np.zeros(10, np.float32)])


def test_random_backbone_through_runner_never_decodes(tmp_path):
    tracks = pl.DataFrame({"track_id": ["t1", "t2"], "audio_path": ["nowhere/1.wav", "nowhere/2.wav"]})
    result = embed_tracks(RandomEmbedder(dim=8), tracks, tmp_path)
    assert result.vectors.ids == ["t1", "t2"] and result.failures.height == 0
    np.testing.assert_array_equal(result.vectors.matrix, vectors_of(RandomEmbedder(dim=8), ["t1", "t2"]))


def test_handcrafted_shape_finite_deterministic():
    embedder = HandcraftedEmbedder()
    t = np.arange(2 * embedder.sample_rate) / embedder.sample_rate
    waves = [(0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220.0, 1760.0)]
    waves.append(np.zeros(100, np.float32))  # shorter than one STFT frame, silent
    first = embedder.embed(waves)
    assert first.shape == (3, 92) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(embedder.embed(waves), first)
    assert np.linalg.norm(first[0] - first[1]) > 0.5  # a low and a high tone differ
    assert embedder.embed([]).shape == (0, 92)


def test_runner_records_corrupt_track_without_sinking_the_batch(tmp_path):
    tracks = make_tracks(tmp_path, {"t1": ("b0", 0.3), "t2": ("b0", 0.5), "t3": ("b0", 0.7)}, corrupt=["t2"])
    embedder = ToyEmbedder()
    result = embed_tracks(embedder, tracks, tmp_path, batch_size=2)
    assert result.vectors.ids == ["t1", "t3"]
    assert result.vectors.matrix[:, 0] == pytest.approx([0.3, 0.7], abs=1e-3)
    assert result.vectors.matrix[:, 2] == pytest.approx([0.5, 0.5])  # 0.5 s of audio each
    failure = result.failures.row(0, named=True)
    assert result.failures.height == 1
    assert failure["track_id"] == "t2" and failure["stage"] == "decode" and "t2.wav" in failure["error"]
    assert result.audio_seconds == pytest.approx(1.0)


def test_runner_with_real_handcrafted_backbone_and_corrupt_track(tmp_path):
    tracks = make_tracks(tmp_path, {"t1": ("b0", 0.3), "t2": ("b0", 0.5)}, corrupt=["t1"])
    result = embed_tracks(HandcraftedEmbedder(), tracks, tmp_path)
    assert result.vectors.ids == ["t2"] and result.vectors.matrix.shape == (1, 92)
    assert result.failures["track_id"].to_list() == ["t1"]


def test_model_error_on_one_waveform_fails_only_that_track(tmp_path):
    tracks = make_tracks(tmp_path, {"t1": ("b0", 0.3), "t2": ("b0", 0.6), "t3": ("b0", 0.8), "t4": ("b0", 0.4)})
    embedder = ToyEmbedder(poison=0.6)
    result = embed_tracks(embedder, tracks, tmp_path, batch_size=4)
    assert result.vectors.ids == ["t1", "t3", "t4"]
    assert result.vectors.matrix[:, 0] == pytest.approx([0.3, 0.8, 0.4], abs=1e-3)
    assert result.failures.height == 1
    failure = result.failures.row(0, named=True)
    assert (failure["track_id"], failure["stage"]) == ("t2", "embed")
    assert "RuntimeError" in failure["error"] and "cannot handle" in failure["error"]
    assert embedder.calls == [4, 1, 1, 1, 1]  # the batch failed once, then track by track


def test_non_finite_embedding_is_a_failure(tmp_path):
    tracks = make_tracks(tmp_path, {"t1": ("b0", 0.3), "t2": ("b0", 0.6), "t3": ("b0", 0.8)})
    result = embed_tracks(ToyEmbedder(nan_amplitude=0.8), tracks, tmp_path)
    assert result.vectors.ids == ["t1", "t2"] and np.isfinite(result.vectors.matrix).all()
    assert result.failures["track_id"].to_list() == ["t3"]
    assert "non-finite" in result.failures["error"][0]


def test_wrong_output_shape_is_a_bug_not_a_track_failure(tmp_path):
    class Wrong(ToyEmbedder):
        dim = 5

        def embed(self, waveforms):
            return np.zeros((len(waveforms), 4), np.float32)

    tracks = make_tracks(tmp_path, {"t1": ("b0", 0.3)})
    with pytest.raises(ValueError, match=r"shape \(1, 4\), expected \(1, 5\)"):
        embed_tracks(Wrong(), tracks, tmp_path)


def test_embed_catalog_is_incremental(tmp_path):
    audio, out = tmp_path / "audio", tmp_path / "emb"
    spec = {"t1": ("b0", 0.3), "t2": ("b0", 0.5), "t3": ("b1", 0.7), "t4": ("b1", 0.9)}
    tracks = make_tracks(audio, spec, corrupt=["t2"])

    first = ToyEmbedder()
    done = embed_catalog(first, tracks, audio, out)
    assert (done.embedded, done.skipped, done.removed, done.failures) == (["b0", "b1"], [], [], 1)
    assert first.embedded == 3
    assert [p.name for p in embedding_files(out)] == ["b0.parquet", "b1.parquet"]
    meta = read_metadata(out / "b0.parquet")
    assert (meta["backbone"], meta["version"], meta["catalog_batch"], meta["dim"]) == ("toy", "1", "b0", "4")
    assert read_table(out / "b0.failures.parquet", "failures")["track_id"].to_list() == ["t2"]
    assert read_backbone(out).ids == ["t1", "t3", "t4"]
    assert read_backbone_failures(out)["track_id"].to_list() == ["t2"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # unchanged inputs and code: nothing is embedded, nothing is rewritten
    again = ToyEmbedder()
    done = embed_catalog(again, tracks, audio, out)
    assert (done.embedded, done.skipped, done.failures) == ([], ["b0", "b1"], 0) and again.calls == []
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    # a new batch embeds only itself
    more = pl.concat([tracks, make_tracks(audio, {"t5": ("b2", 0.2)})])
    newcomer = ToyEmbedder()
    done = embed_catalog(newcomer, more, audio, out)
    assert (done.embedded, done.skipped) == (["b2"], ["b0", "b1"]) and newcomer.embedded == 1
    assert read_backbone(out).ids == ["t1", "t3", "t4", "t5"]

    # changed audio of one track re-embeds its batch only
    write_sine(audio / "b1" / "t4.wav", seconds=0.5, sample_rate=SR, amplitude=0.1)
    changed = more.with_columns(pl.when(pl.col("track_id") == "t4").then(pl.lit("changed"))
                                .otherwise(pl.col("sha256")).alias("sha256"))
    again = ToyEmbedder()
    done = embed_catalog(again, changed, audio, out)
    assert (done.embedded, done.skipped) == (["b1"], ["b0", "b2"]) and again.embedded == 2
    assert read_backbone(out).subset(["t4"]).matrix[0, 0] == pytest.approx(0.1, abs=1e-3)

    # a new backbone version re-embeds everything
    bumped = ToyEmbedder(version="2")
    done = embed_catalog(bumped, changed, audio, out)
    assert done.embedded == ["b0", "b1", "b2"] and done.skipped == [] and bumped.embedded == 4
    assert read_metadata(out / "b2.parquet")["version"] == "2"

    # a batch gone from the catalog loses its tables
    without_b1 = changed.filter(pl.col("batch") != "b1")
    done = embed_catalog(ToyEmbedder(version="2"), without_b1, audio, out)
    assert done.removed == ["b1"] and done.skipped == ["b0", "b2"]
    assert sorted(p.name for p in out.iterdir()) == ["b0.failures.parquet", "b0.parquet",
                                                     "b2.failures.parquet", "b2.parquet"]
    assert read_backbone(out).ids == ["t1", "t5"]


def test_only_batches_restricts_work_and_keeps_other_files(tmp_path):
    audio, out = tmp_path / "audio", tmp_path / "emb"
    tracks = make_tracks(audio, {"t1": ("b0", 0.3), "t2": ("b1", 0.5)})
    embed_catalog(ToyEmbedder(), tracks.filter(pl.col("batch") == "b0"), audio, out)
    done = embed_catalog(ToyEmbedder(), tracks, audio, out, only_batches=["b1"])
    assert (done.embedded, done.skipped, done.removed) == (["b1"], [], [])
    assert [p.name for p in embedding_files(out)] == ["b0.parquet", "b1.parquet"]


def test_read_backbone_without_tables(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialise the embeddings"):
        read_backbone(tmp_path)
