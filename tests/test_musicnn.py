"""The MusiCNN port: agreement with the original TensorFlow model, features, patching, robustness, tags."""
from __future__ import annotations

import hashlib
from pathlib import Path

import librosa
import numpy as np
import pretty_midi
import pytest
import torch

from embedders.base import BACKBONES, Embedder
from embedders.mel import LogMel
from embedders.musicnn import (
    MSD_TAGS,
    MTT_TAGS,
    PATCH_FRAMES,
    MusiCNNEmbedder,
    MusiCNNMSD,
    MusiCNNMTT,
    cut_patches,
    load_pretrained,
)

SR = 16000
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "musicnn_tf_reference.npz"
SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference| over the whole array."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def mtt() -> MusiCNNEmbedder:
    return MusiCNNMTT(device="cpu")


@pytest.mark.parametrize("dataset", ["MTT", "MSD"])
def test_port_matches_tensorflow_outputs(dataset: str) -> None:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE}: TensorFlow reference fixture absent")
    reference = np.load(FIXTURE)
    model, _ = load_pretrained(dataset)
    with torch.inference_mode():
        outputs = model(torch.from_numpy(reference["logmel"]))
    for field in ("taggram", "mean_pool", "max_pool", "penultimate"):
        expected = reference[f"{dataset}_musicnn/{field}"]
        ours = getattr(outputs, field).numpy()
        assert ours.shape == expected.shape
        assert relative_error(ours, expected) < 1e-4, field


def test_log_mel_matches_numpy_reference() -> None:
    """Reference: reflect-padded centred frames, periodic Hann, numpy rfft in float64, librosa's mel filters
    (what librosa.feature.melspectrogram computes in musicnn's extractor)."""
    wave = (0.3 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    padded = np.pad(wave.astype(np.float64), 256, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 512)[::256]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    expected = np.log10(10000 * power @ librosa.filters.mel(sr=SR, n_fft=512, n_mels=96).T + 1)
    with torch.inference_mode():
        ours = LogMel()(torch.from_numpy(wave).unsqueeze(0))[0].numpy()
    assert ours.shape == expected.shape == (2 * SR // 256 + 1, 96)
    assert relative_error(ours, expected) < 1e-5


def test_cut_patches_policy() -> None:
    logmel = torch.arange(457.0).unsqueeze(1).repeat(1, 96)  # 7.3 s = 457 frames, value = frame index
    adjacent = cut_patches(logmel, PATCH_FRAMES)
    assert adjacent.shape == (2, PATCH_FRAMES, 96)  # tail of 83 frames dropped
    assert adjacent[1, 0, 0] == PATCH_FRAMES
    overlapping = cut_patches(logmel, 93)
    assert overlapping.shape == (3, PATCH_FRAMES, 96)
    assert overlapping[:, 0, 0].tolist() == [0, 93, 186]
    short = cut_patches(torch.arange(50.0).unsqueeze(1).repeat(1, 96), PATCH_FRAMES)
    assert short.shape == (1, PATCH_FRAMES, 96)
    assert short[0, :, 0].tolist() == [float(i % 50) for i in range(PATCH_FRAMES)]  # repeat-padded


def test_embedder_protocol_and_provenance(mtt: MusiCNNEmbedder) -> None:
    assert isinstance(mtt, Embedder)
    assert BACKBONES["musicnn_mtt"] is MusiCNNMTT and BACKBONES["musicnn_msd"] is MusiCNNMSD
    assert isinstance(mtt, MusiCNNMTT) and isinstance(mtt, MusiCNNEmbedder)
    assert (mtt.name, mtt.sample_rate, mtt.dim) == ("musicnn_mtt", 16000, 200)
    provenance = mtt.provenance()
    assert provenance["weights_sha256"] == hashlib.sha256(mtt.weights_path.read_bytes()).hexdigest()
    assert provenance["sample_rate"] == "16000"
    assert "187 frames" in provenance["clip_policy"] and "mean over patches" in provenance["pooling"]
    assert len(MTT_TAGS) == len(MSD_TAGS) == 50 and mtt.tag_names == tuple(MTT_TAGS)
    # the tag names are known from the classes, without loading weights
    assert MusiCNNMTT.tag_names == tuple(MTT_TAGS) and MusiCNNMSD.tag_names == tuple(MSD_TAGS)
    assert MusiCNNMTT(hop_seconds=1.5, device="cpu").hop_frames == 93  # Essentia's hop


def test_embed_shapes_and_determinism(mtt: MusiCNNEmbedder) -> None:
    rng = np.random.default_rng(1)
    lengths = [300, SR, int(6.5 * SR)]  # shorter than one FFT frame, shorter than one patch, two patches
    waves = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    vectors = mtt.embed(waves)
    assert vectors.shape == (3, 200) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    np.testing.assert_array_equal(mtt.embed(waves), vectors)
    np.testing.assert_allclose(mtt.embed(waves[1:2])[0], vectors[1], rtol=1e-5, atol=1e-5)  # batch-independent
    assert not np.allclose(vectors[0], vectors[1])
    assert mtt.embed([]).shape == (0, 200)
    with pytest.raises(ValueError, match="musicnn_mtt: expected a non-empty mono waveform"):
        mtt.embed([np.zeros(0, np.float32)])


def test_loud_audio_gives_finite_outputs(mtt: MusiCNNEmbedder) -> None:
    t = np.arange(2 * SR) / SR
    square = np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # full scale
    noise = 1000 * np.random.default_rng(2).standard_normal(2 * SR).astype(np.float32)  # far beyond [-1, 1]
    waves = [square, np.clip(noise, -1, 1), noise]
    assert np.isfinite(mtt.embed(waves)).all()
    tags = mtt.tags(waves)
    assert tags.shape == (3, 50) and np.isfinite(tags).all() and ((tags >= 0) & (tags <= 1)).all()


def render(program: int, seconds_per_chord: float = 0.5) -> np.ndarray:
    """A C-major chord progression played by General-MIDI `program`, mono float32 at 16 kHz (about 4.5 s)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    font = synth.sfload(str(SOUNDFONT))
    synth.program_select(0, font, 0, program)
    chords = [(60, 64, 67), (62, 65, 69), (64, 67, 71), (65, 69, 72), (67, 71, 74), (65, 69, 72), (64, 67, 71),
              (60, 64, 67)]
    blocks = []
    for chord in chords:
        for key in chord:
            synth.noteon(0, key, 100)
        blocks.append(np.frombuffer(synth.generate(int(seconds_per_chord * SR)), dtype=np.float32))
        for key in chord:
            synth.noteoff(0, key)
    blocks.append(np.frombuffer(synth.generate(SR // 2), dtype=np.float32))  # release tail
    return np.concatenate(blocks).reshape(-1, 2).mean(axis=1).astype(np.float32)


def test_tags_follow_the_rendered_instrument(mtt: MusiCNNEmbedder) -> None:
    pytest.importorskip("tinysoundfont")
    if not SOUNDFONT.is_file():
        pytest.skip(f"{SOUNDFONT}: General-MIDI soundfont absent")
    piano, choir = mtt.tags([render(0), render(52)])  # 0 Acoustic Grand Piano, 52 Choir Aahs
    rank = {name: position for position, name in enumerate(np.array(MTT_TAGS)[np.argsort(-piano)])}
    assert rank["piano"] == 0 and piano[MTT_TAGS.index("piano")] > 0.5
    assert piano[MTT_TAGS.index("piano")] > 100 * piano[MTT_TAGS.index("drums")]
    top3 = set(np.array(MTT_TAGS)[np.argsort(-choir)[:3]])
    assert {"choir", "choral"} <= top3
    assert choir[MTT_TAGS.index("piano")] < 0.05


def test_tag_tables_through_the_runner(mtt: MusiCNNEmbedder, tmp_path: Path) -> None:
    """TagView runs through the same runner as embeddings: one table per batch, probabilities equal to
    `tags`, readable top tags, and a per-label summary that names the instrument it hears."""
    pytest.importorskip("tinysoundfont")
    import polars as pl
    import soundfile as sf

    from embedders.runner import embed_catalog, read_backbone
    from embedders.tags import TagView, is_tagger, tags_by_label, top_tags

    waves = {"p0": render(0), "p1": render(0, 0.4), "c0": render(52)}
    for track_id, wave in waves.items():
        sf.write(str(tmp_path / f"{track_id}.wav"), wave, SR, subtype="FLOAT")  # lossless: tags compare exactly
    tracks = pl.DataFrame({"track_id": list(waves), "audio_path": [f"{t}.wav" for t in waves],
                           "sha256": list(waves), "batch": ["b0", "b0", "b1"]})
    view = TagView(mtt)
    assert is_tagger(mtt) and view.name == "musicnn_mtt_tags" and view.dim == 50
    result = embed_catalog(view, tracks, tmp_path, tmp_path / "tags", progress=lambda _: None)
    assert result.embedded == ["b0", "b1"] and result.failures == 0
    stored = read_backbone(tmp_path / "tags")
    expected = mtt.tags([waves[t] for t in stored.ids])
    np.testing.assert_allclose(stored.matrix, expected, rtol=1e-5, atol=1e-6)

    table = top_tags(stored, view.tag_names, k=3).sort("track_id")
    assert table["top_tags"].to_list()[2][0] == "piano"  # p1
    probabilities = table["top_probabilities"].to_list()
    assert all(p[0] >= p[1] >= p[2] for p in probabilities)

    summary = tags_by_label(stored, view.tag_names, {"p0": "piano", "p1": "piano", "c0": "choir"})
    by_label = {row["label"]: row for row in summary.iter_rows(named=True)}
    assert by_label["piano"]["tracks"] == 2 and by_label["piano"]["top_tags"][0] == "piano"
    assert {"choir", "choral"} & set(by_label["choir"]["top_tags"])
    with pytest.raises(ValueError, match="50 probabilities per track but 2 tag names"):
        top_tags(stored, ["a", "b"])
    with pytest.raises(TypeError, match="not a tagging backbone"):
        TagView(HandcraftedEmbedderStub())


class HandcraftedEmbedderStub:
    """An embedder without tags (what `TagView` must refuse)."""
    name, sample_rate, dim, version = "plain", SR, 2, "1"

    def embed(self, waveforms):
        return np.zeros((len(waveforms), 2), np.float32)


def test_one_forward_writes_the_embedding_and_the_tag_tables(mtt: MusiCNNEmbedder, tmp_path: Path,
                                                              monkeypatch) -> None:
    """`embed_batch(..., tags_dir=)` runs the model once per batch and writes both tables; the tags pass then
    finds every batch up to date, and each table equals what its own pass would have written."""
    import polars as pl
    import soundfile as sf

    from embedders.runner import embed_batch, embed_catalog, read_backbone
    from embedders.tags import TagView

    rng = np.random.default_rng(0)
    waves = {f"t{i}": (0.1 * rng.standard_normal(SR * 4)).astype(np.float32) for i in range(3)}
    for track_id, wave in waves.items():
        sf.write(str(tmp_path / f"{track_id}.wav"), wave, SR, subtype="FLOAT")
    tracks = pl.DataFrame({"track_id": list(waves), "audio_path": [f"{t}.wav" for t in waves],
                           "sha256": list(waves), "batch": ["b0"] * 3})
    forwards = []
    original = MusiCNNEmbedder.patch_outputs
    monkeypatch.setattr(MusiCNNEmbedder, "patch_outputs",
                        lambda self, w: (forwards.append(len(w)), original(self, w))[1])
    assert embed_batch(mtt, tracks, "b0", tmp_path, tmp_path / "emb", progress=lambda _: None,
                       tags_dir=tmp_path / "tags") == 0
    assert forwards == [3]
    again = embed_catalog(TagView(mtt), tracks, tmp_path, tmp_path / "tags", progress=lambda _: None)
    assert again.embedded == [] and again.skipped == ["b0"] and forwards == [3]
    embedded, tagged = read_backbone(tmp_path / "emb"), read_backbone(tmp_path / "tags")
    ordered = [waves[t] for t in embedded.ids]
    np.testing.assert_allclose(embedded.matrix, mtt.embed(ordered), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tagged.matrix, mtt.tags(ordered), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernel", [(32, 1), (64, 1), (128, 1), (7, 38)])
def test_frequency_pooled_blocks_give_the_convolutions_maxima(kernel, dtype):
    from embedders.musicnn import FrequencyPooledConv, _same_padding

    torch.manual_seed(kernel[0])
    block = FrequencyPooledConv(5, kernel, _same_padding(kernel[0]))
    block.sign.copy_(torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]))
    block.norm.scale.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 187, 96)
    with torch.no_grad():
        by_conv = block.conv(x)[:, :, block.skip_frames: block.skip_frames + 187].amax(dim=3)
        expected = block.norm(torch.relu(by_conv * block.sign.view(1, -1, 1)))
        ours = block.to(dtype)(x.to(dtype)).float()
    tolerance = 1e-5 if dtype == torch.float32 else 0.02 * expected.abs().max().item()
    torch.testing.assert_close(ours, expected, rtol=0, atol=tolerance)


def test_bfloat16_model_stays_close_to_tensorflow_outputs() -> None:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE}: TensorFlow reference fixture absent")
    reference = np.load(FIXTURE)
    model = MusiCNNMTT(device="cpu", precision="bfloat16").model
    with torch.inference_mode():
        outputs = model(torch.from_numpy(reference["logmel"]).to(torch.bfloat16))
    assert outputs.taggram.dtype == torch.float32
    taggram, expected = outputs.taggram.numpy(), reference["MTT_musicnn/taggram"]
    assert 0 < np.abs(taggram - expected).max() < 0.01
    assert (taggram.argmax(1) == expected.argmax(1)).all()
    ours, theirs = outputs.penultimate.numpy(), reference["MTT_musicnn/penultimate"]
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() > 0.999


def test_precision_must_suit_the_device() -> None:
    with pytest.raises(ValueError, match="precision 'float16' on cpu"):
        MusiCNNMTT(device="cpu", precision="float16")
