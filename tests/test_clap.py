"""The `clap` backbone on a tiny random CLAP saved to disk and loaded back the way a user loads one: as a
transformers folder and as an original LAION checkpoint (`laion_clap` layout)."""
import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, PreTrainedTokenizerFast

from assets.experiment import ExperimentError, parse_experiment
from embedders.base import Embedder, create_embedder
from embedders.clap import ClapEmbedder
from embedders.clap_laion import LaionCheckpointError, laion_config, laion_to_transformers

RATE = 48_000
WORDS = ["<s>", "<pad>", "</s>", "<unk>", "piano", "choir", "flute", "slow", "fast", "music"]


def tiny_config() -> ClapConfig:
    audio = {"spec_size": 64, "num_mel_bins": 16, "window_size": 4, "patch_size": 4, "patch_stride": 4,
             "depths": [1, 2], "num_attention_heads": [2, 2], "patch_embeds_hidden_size": 16, "hidden_size": 32}
    text = {"vocab_size": len(WORDS), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 37, "max_position_embeddings": 84, "pad_token_id": 1}
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=24)


def save_assets(folder, config: ClapConfig) -> None:
    """Everything but the weights: config, a 1 s / 16-mel feature extractor, a word-level tokenizer."""
    config.save_pretrained(folder)
    ClapFeatureExtractor(feature_size=16, max_length_s=1, truncation="rand_trunc").save_pretrained(folder)
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>", model_max_length=77).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_model() -> ClapModel:
    torch.manual_seed(0)
    return ClapModel(tiny_config()).eval()


@pytest.fixture(scope="module")
def hf_folder(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clap_hf")
    tiny_model.save_pretrained(folder)
    save_assets(folder, tiny_model.config)
    return folder


@pytest.fixture(scope="module")
def embedder(hf_folder) -> ClapEmbedder:
    return ClapEmbedder(weights=hf_folder, device="cpu", max_windows=3)


def tracks(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * RATE))).astype(np.float32) for s in seconds]


# --- LAION layout, written from the module names in laion_clap (clap_module/model.py, htsat.py) -------------
HF_BLOCK_TO_LAION = [
    ("layernorm_before", "norm1"),
    ("layernorm_after", "norm2"),
    ("attention.output.dense", "attn.proj"),
    ("attention.self.relative_position", "attn.relative_position"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
]


def to_laion_layout(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What laion_clap's CLAP.state_dict() holds for the same weights: RobertaModel under `text_branch`,
    HTSAT_Swin_Transformer under `audio_branch` (bn0, fused attn.qkv, norm1/norm2, mlp.fc1/fc2), nn.Sequential
    projections (indices 0 and 2), plus the entries transformers has no use for."""
    laion: dict[str, torch.Tensor] = {}
    for key, tensor in hf_state.items():
        if key.startswith("text_model."):
            if key.endswith("embeddings.token_type_ids"):
                continue  # a transformers-only buffer
            laion["text_branch." + key.removeprefix("text_model.")] = tensor
        elif match := re.fullmatch(r"(text|audio)_projection\.linear([12])\.(weight|bias)", key):
            tower, number, leaf = match.groups()
            laion[f"{tower}_projection.{0 if number == '1' else 2}.{leaf}"] = tensor
        elif key.startswith("audio_model.audio_encoder."):
            rest = key.removeprefix("audio_model.audio_encoder.").replace("batch_norm.", "bn0.")
            if ".attention.self.key." in rest or ".attention.self.value." in rest:
                continue
            if ".attention.self.query." in rest:
                q, k, v = (hf_state[key.replace("query", part)] for part in ("query", "key", "value"))
                laion["audio_branch." + rest.replace("attention.self.query", "attn.qkv")] = torch.cat([q, k, v])
                continue
            for hf_name, laion_name in HF_BLOCK_TO_LAION:
                if ".blocks." in rest and f".{hf_name}" in rest:
                    rest = rest.replace(f".{hf_name}", f".{laion_name}")
                    break
            laion["audio_branch." + rest] = tensor
        else:
            laion[key] = tensor  # logit_scale_a, logit_scale_t
    generator = torch.Generator().manual_seed(1)
    laion_only = {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "audio_branch.logmel_extractor.melW": (513, 16),
        "audio_branch.layers.1.blocks.1.attn_mask": (4, 16, 16),
        "audio_branch.tscam_conv.weight": (527, 32, 2, 3),
        "audio_branch.head.weight": (527, 527),
        "audio_transform.sequential.0.weight": (24, 24),
        "text_transform.sequential.3.bias": (24,),
    }
    laion.update({k: torch.randn(shape, generator=generator) for k, shape in laion_only.items()})
    return laion


@pytest.fixture(scope="module")
def laion_checkpoint(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clap_laion")
    state = {"module." + k: v.clone() for k, v in to_laion_layout(tiny_model.state_dict()).items()}
    path = folder / "tiny_clap.pt"
    torch.save({"epoch": 3, "state_dict": state}, path)
    config_folder = folder / "config"
    save_assets(config_folder, tiny_model.config)
    return path, config_folder


# --- tests ------------------------------------------------------------------------------------------------
def test_loads_from_a_folder_and_follows_the_protocol(embedder, tiny_model):
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.sample_rate, embedder.dim) == ("clap", RATE, 24)
    assert embedder.window_s == 1.0 and embedder.hop_s == 1.0  # the feature extractor's clip length
    for name, tensor in tiny_model.state_dict().items():
        torch.testing.assert_close(embedder.model.state_dict()[name], tensor, rtol=0, atol=0)


def test_registered_under_clap(hf_folder):
    assert isinstance(create_embedder("clap", weights=hf_folder, device="cpu"), ClapEmbedder)


def test_audio_vectors_shape_finite_deterministic(embedder):
    batch = tracks([2.5, 0.3, 1.0])
    first, second = embedder.embed(batch), embedder.embed(batch)
    assert first.shape == (3, 24) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)
    assert np.all(np.linalg.norm(first, axis=1) <= 1 + 1e-6)
    assert embedder.embed([]).shape == (0, 24)


def test_track_vector_is_the_mean_of_normalised_window_vectors(embedder):
    wave = tracks([2.5])[0]  # windows at 0, 1 and the tail window at 1.5 s
    windows = np.stack([wave[0:RATE], wave[RATE : 2 * RATE], wave[-RATE:]])
    per_window = embedder.embed_windows(windows)
    np.testing.assert_allclose(np.linalg.norm(per_window, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(embedder.embed([wave])[0], per_window.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_batching_does_not_change_a_track_vector(embedder):
    batch = tracks([2.0, 1.5, 0.4], seed=3)
    together = embedder.embed(batch)
    alone = np.stack([embedder.embed([wave])[0] for wave in batch])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


def test_window_cap_and_short_track_repeat(hf_folder, embedder):
    long_track = tracks([9.0])[0]
    capped = embedder.embed([long_track])[0]  # max_windows=3: windows starting at 1, 4 and 7 s
    picked = np.stack([long_track[s * RATE : (s + 1) * RATE] for s in (1, 4, 7)])
    np.testing.assert_allclose(capped, embedder.embed_windows(picked).mean(axis=0), rtol=1e-5, atol=1e-6)
    short = tracks([0.25])[0]
    np.testing.assert_allclose(embedder.embed([short])[0], embedder.embed([np.tile(short, 4)])[0],
                               rtol=1e-5, atol=1e-6)


def test_text_vectors(embedder):
    text = embedder.embed_text(["slow piano music", "fast choir", "flute"])
    assert text.shape == (3, 24) and np.isfinite(text).all()
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(text[0], text[1])
    np.testing.assert_allclose(text[:1], embedder.embed_text(["slow piano music"]), rtol=1e-5, atol=1e-6)


def test_provenance_names_weights_and_window_policy(embedder, hf_folder):
    import hashlib

    expected = hashlib.sha256((hf_folder / "model.safetensors").read_bytes()).hexdigest()
    provenance = embedder.provenance()
    assert provenance["weights_sha256"] == expected
    assert provenance["weights_format"] == "transformers"
    assert "1 s windows every 1 s, at most 3 spread evenly" in provenance["window_policy"]
    assert provenance["dtype"] == "float32"


def test_laion_checkpoint_gives_identical_outputs(embedder, laion_checkpoint):
    path, config_folder = laion_checkpoint
    laion = ClapEmbedder(weights=path, config=config_folder, device="cpu", max_windows=3)
    reference = embedder.model.state_dict()
    assert set(laion.model.state_dict()) == set(reference)
    for name, tensor in laion.model.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    # Same weights, bit for bit; outputs may differ in the last float32 bit because BLAS kernels depend on the
    # memory alignment of the weights (safetensors mmap vs torch.load).
    batch = tracks([2.5, 0.3], seed=5)
    np.testing.assert_allclose(laion.embed(batch), embedder.embed(batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(laion.embed_text(["piano music"]), embedder.embed_text(["piano music"]),
                               rtol=1e-5, atol=1e-6)
    assert laion.provenance()["weights_format"] == "laion"
    assert laion.provenance()["weights_sha256"] != embedder.provenance()["weights_sha256"]


def test_laion_mapping_covers_every_transformers_weight(tiny_model):
    mapped = laion_to_transformers(to_laion_layout(tiny_model.state_dict()))
    assert set(tiny_model.state_dict()) - set(mapped) == {"text_model.embeddings.token_type_ids"}
    qkv = to_laion_layout(tiny_model.state_dict())["audio_branch.layers.0.blocks.0.attn.qkv.weight"]
    assert qkv.shape == (48, 16)
    torch.testing.assert_close(mapped["audio_model.audio_encoder.layers.0.blocks.0.attention.self.key.weight"],
                               qkv[16:32])


def test_laion_checkpoint_without_config_or_with_wrong_config(laion_checkpoint, monkeypatch):
    path, config_folder = laion_checkpoint
    with pytest.raises(FileNotFoundError, match="LAION checkpoint; also set the `config` option"):
        ClapEmbedder(weights=path, device="cpu")
    monkeypatch.setenv("MUSICREC_CLAP_CONFIG", str(config_folder))  # earlier versions read it; no longer
    with pytest.raises(FileNotFoundError, match="also set the `config` option"):
        ClapEmbedder(weights=path, device="cpu")
    with pytest.raises(LaionCheckpointError, match="does not match the CLAP config 'htsat-tiny'"):
        ClapEmbedder(weights=path, config="htsat-tiny", device="cpu")


def test_clip_style_checkpoint_is_refused():
    with pytest.raises(LaionCheckpointError, match="CLIP-style"):
        laion_to_transformers({"token_embedding.weight": torch.zeros(2, 2)})


def test_missing_weights_name_the_option(tmp_path, hf_folder, monkeypatch):
    with pytest.raises(TypeError, match=r"clap: missing required option\(s\) \['weights'\]"):
        ClapEmbedder()
    with pytest.raises(FileNotFoundError, match="no weights given; set the `weights` option to .*model.safetensors"):
        ClapEmbedder(weights="")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClapEmbedder(weights=tmp_path / "nowhere.pt")
    with pytest.raises(FileNotFoundError, match=r"also_nowhere \(the `weights` option\) does not exist"):
        ClapEmbedder(weights=str(tmp_path / "also_nowhere"))
    # the environment variables of earlier versions are not read any more
    monkeypatch.setenv("MUSICREC_CLAP_WEIGHTS", str(hf_folder))
    with pytest.raises(TypeError, match="weights"):
        ClapEmbedder()
    # an experiment file without the option names its key
    with pytest.raises(ExperimentError, match=r"backbones\.clap\.weights"):
        parse_experiment({"name": "t", "storage": str(tmp_path / "s"), "catalog": {"kind": "demo"},
                          "backbones": {"clap": {"device": "cpu"}}})


def test_window_longer_than_the_clip_is_refused(hf_folder):
    with pytest.raises(ValueError, match="window_s=2"):
        ClapEmbedder(weights=hf_folder, device="cpu", window_s=2.0)


@pytest.mark.parametrize("name, width, depths", [("htsat-tiny", 96, [2, 2, 6, 2]), ("htsat-base", 128, [2, 2, 12, 2])])
def test_named_configs_follow_laion_htsat_sizes(name, width, depths):
    """laion_clap's create_htsat_model: tiny = embed_dim 96, depths 2-2-6-2; base = 128, 2-2-12-2; heads 4-8-16-32."""
    config, folder = laion_config(name, {})
    audio = config.audio_config
    assert folder is None and audio.patch_embeds_hidden_size == width and list(audio.depths) == depths
    assert list(audio.num_attention_heads) == [4, 8, 16, 32] and audio.spec_size == 256 and audio.window_size == 8
    with torch.device("meta"):
        model = ClapModel(config)
    assert model.audio_model.audio_encoder.num_features == audio.hidden_size == 8 * width
    assert model.audio_projection.linear2.out_features == 512
