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
    MSD_TAGS, MTT_TAGS, PATCH_FRAMES, MusiCNNEmbedder, cut_patches, load_pretrained, musicnn_msd, musicnn_mtt,
)

SR = 16000
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "musicnn_tf_reference.npz"
SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference| over the whole array."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def mtt() -> MusiCNNEmbedder:
    return musicnn_mtt(device="cpu")


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
    assert BACKBONES["musicnn_mtt"] is musicnn_mtt and BACKBONES["musicnn_msd"] is musicnn_msd
    assert (mtt.name, mtt.sample_rate, mtt.dim) == ("musicnn_mtt", 16000, 200)
    provenance = mtt.provenance()
    assert provenance["weights_sha256"] == hashlib.sha256(mtt.weights_path.read_bytes()).hexdigest()
    assert provenance["sample_rate"] == "16000"
    assert "187 frames" in provenance["clip_policy"] and "mean over patches" in provenance["pooling"]
    assert len(MTT_TAGS) == len(MSD_TAGS) == 50 and mtt.tag_names == MTT_TAGS
    assert MusiCNNEmbedder("MTT", hop_seconds=1.5, device="cpu").hop_frames == 93  # Essentia's hop


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
