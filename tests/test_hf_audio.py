"""The `hf_audio` backbone on tiny random HuBERT / wav2vec 2.0 models saved with save_pretrained and loaded back
through the same path a user takes (HFAudioEmbedder(weights=folder))."""
import hashlib

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from embedders.base import Embedder, create_embedder
from embedders.hf_audio import HFAudioEmbedder

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
        "conv_dim": (8, 8), "conv_stride": (5, 4), "conv_kernel": (10, 8), "num_conv_pos_embeddings": 8,
        "num_conv_pos_embedding_groups": 2}


@pytest.fixture(scope="module")
def hubert_folder(tmp_path_factory):
    """A HuBERT without a feature extractor: the embedder falls back to 24 kHz and normalised waves."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hubert")
    HubertModel(HubertConfig(**TINY)).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wav2vec2_folder(tmp_path_factory):
    """A wav2vec 2.0 with a 16 kHz feature extractor."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("wav2vec2")
    Wav2Vec2Model(Wav2Vec2Config(**TINY)).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def embedder(hubert_folder) -> HFAudioEmbedder:
    return HFAudioEmbedder(weights=hubert_folder, device="cpu", window_s=1.0, max_windows=4)


def wave(seconds: float, rate: int = 24_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def manual_hidden_states(embedder: HFAudioEmbedder, window: np.ndarray) -> tuple[torch.Tensor, ...]:
    """All hidden states of one window, computed directly with the model: (frames, dim) each."""
    normalised = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    with torch.inference_mode():
        out = embedder.model(input_values=torch.from_numpy(normalised)[None], output_hidden_states=True)
    return tuple(state[0] for state in out.hidden_states)


def test_protocol_defaults_and_registry(embedder, hubert_folder):
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.sample_rate, embedder.dim) == ("hf_audio", 24_000, 16)
    assert isinstance(create_embedder("hf_audio", weights=hubert_folder, device="cpu"), HFAudioEmbedder)


def test_shapes_finite_deterministic(embedder):
    batch = [wave(2.5), wave(0.3, seed=1), wave(1.0, seed=2)]
    first = embedder.embed(batch)
    assert first.shape == (3, 16) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embedder.embed(batch))
    assert embedder.embed([]).shape == (0, 16)


def test_mean_pooling_equals_a_manual_mean_of_the_last_hidden_states(embedder):
    track = wave(1.0)  # exactly one window
    expected = manual_hidden_states(embedder, track)[-1].mean(dim=0).numpy()
    np.testing.assert_allclose(embedder.embed([track])[0], expected, rtol=1e-5, atol=1e-6)


def test_layer_and_pooling_options(hubert_folder, embedder):
    track = wave(1.0, seed=4)
    states = manual_hidden_states(embedder, track)
    assert len(states) == 3  # the input to the first layer + 2 layers
    first = HFAudioEmbedder(weights=hubert_folder, device="cpu", window_s=1.0, layer=0).embed([track])[0]
    last = embedder.embed([track])[0]
    np.testing.assert_allclose(first, states[0].mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, last, atol=1e-3)
    as_index = HFAudioEmbedder(weights=hubert_folder, device="cpu", window_s=1.0, layer=2).embed([track])[0]
    np.testing.assert_allclose(as_index, last, rtol=1e-6, atol=1e-7)  # separately loaded copies
    averaged = HFAudioEmbedder(weights=hubert_folder, device="cpu", window_s=1.0, layer="mean").embed([track])[0]
    np.testing.assert_allclose(averaged, torch.stack(states).mean(dim=(0, 1)).numpy(), rtol=1e-5, atol=1e-6)
    peak = HFAudioEmbedder(weights=hubert_folder, device="cpu", window_s=1.0, pooling="max").embed([track])[0]
    np.testing.assert_allclose(peak, states[-1].amax(dim=0).numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(peak >= last - 1e-6) and not np.allclose(peak, last)


def test_track_vector_is_the_mean_over_capped_windows(embedder):
    track = wave(10.0, seed=5)  # 10 one-second windows, capped to 4: starts at 1, 3, 6, 8 s
    picked = np.stack([track[s * 24_000 : (s + 1) * 24_000] for s in (1, 3, 6, 8)])
    np.testing.assert_array_equal(embedder.track_windows(track), picked)
    np.testing.assert_allclose(embedder.embed([track])[0], embedder.embed_windows(picked).mean(axis=0),
                               rtol=1e-5, atol=1e-6)


def test_short_tracks_are_one_window_of_their_own_length(hubert_folder):
    long_windows = HFAudioEmbedder(weights=hubert_folder, device="cpu", window_s=5.0)
    assert long_windows.track_windows(wave(3.0)).shape == (1, 72_000)  # not padded to 5 s
    tiny = long_windows.track_windows(wave(0.25))
    assert tiny.shape == (1, 24_000) and np.all(tiny[0, 6_000:] == 0)  # zero-padded to the 1 s minimum
    assert np.isfinite(long_windows.embed([wave(0.25)])).all()


def test_feature_extractor_sets_the_rate_and_wav2vec2_loads(wav2vec2_folder):
    model = HFAudioEmbedder(weights=wav2vec2_folder, device="cpu", window_s=1.0)
    assert model.sample_rate == 16_000 and model.dim == 16
    vectors = model.embed([wave(2.0, rate=16_000), wave(0.5, rate=16_000, seed=3)])
    assert vectors.shape == (2, 16) and np.isfinite(vectors).all()
    with pytest.raises(ValueError, match="feature extractor expects 16000"):
        HFAudioEmbedder(weights=wav2vec2_folder, device="cpu", sample_rate=24_000)


def test_provenance(embedder, hubert_folder):
    provenance = embedder.provenance()
    expected = hashlib.sha256((hubert_folder / "model.safetensors").read_bytes()).hexdigest()
    assert provenance["weights_sha256"] == expected
    assert provenance["model_type"] == "hubert"
    assert provenance["pooling"] == "layer -1 hidden states, mean over time, mean over windows"
    assert "1 s windows every 1 s, at most 4 spread evenly" in provenance["window_policy"]


def test_bad_settings_and_missing_weights(hubert_folder, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"layer=3.*\[-3, 2\]"):
        HFAudioEmbedder(weights=hubert_folder, device="cpu", layer=3)
    with pytest.raises(ValueError, match="pooling='channels'"):
        HFAudioEmbedder(weights=hubert_folder, device="cpu", pooling="channels")
    with pytest.raises(TypeError, match=r"hf_audio: missing required option\(s\) \['weights'\]"):
        HFAudioEmbedder()
    with pytest.raises(FileNotFoundError, match="no weights given; set the `weights` option to .*config.json"):
        HFAudioEmbedder(weights="")
    with pytest.raises(FileNotFoundError, match=r"nowhere \(the `weights` option\) does not exist.*config.json"):
        HFAudioEmbedder(weights=str(tmp_path / "nowhere"))
    monkeypatch.setenv("MUSICREC_HF_AUDIO_WEIGHTS", str(hubert_folder))  # earlier versions read it; no longer
    with pytest.raises(TypeError, match="weights"):
        HFAudioEmbedder()
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['name'\]"):  # the table name is the experiment's
        HFAudioEmbedder(weights=hubert_folder, device="cpu", name="mert")
    with pytest.raises(FileNotFoundError, match="not a folder holding config.json"):
        HFAudioEmbedder(weights=tmp_path)
