"""Original LAION CLAP checkpoints (`laion_clap`'s `CLAP_Module`, e.g. `music_audioset_epoch_15_esc_90.14.pt`)
loaded into transformers' `ClapModel`, without the `laion_clap` package.

A LAION checkpoint is a torch pickle `{"epoch": ..., "state_dict": {...}}` (or the bare state dict), keys
possibly prefixed with `module.` (saved from DistributedDataParallel). It is read with
`torch.load(weights_only=True)` (or safetensors), so no pickled code runs. Its layout, from the module names in
`laion_clap/clap_module/model.py` and `htsat.py`, maps to transformers' `ClapModel` as follows:

| LAION (`CLAP`)                                   | transformers (`ClapModel`)                                  |
|--------------------------------------------------|-------------------------------------------------------------|
| `text_branch.*` (a `RobertaModel`)               | `text_model.*` (same inner names)                           |
| `text_projection.0` / `.2`                       | `text_projection.linear1` / `.linear2`                      |
| `audio_projection.0` / `.2`                      | `audio_projection.linear1` / `.linear2`                     |
| `logit_scale_a`, `logit_scale_t`                 | same                                                        |
| `audio_branch.bn0`                               | `audio_model.audio_encoder.batch_norm`                      |
| `audio_branch.layers.i.blocks.j.norm1` / `norm2` | `...layers.i.blocks.j.layernorm_before` / `layernorm_after` |
| `...blocks.j.attn.qkv` (rows: query, key, value) | `...blocks.j.attention.self.query` / `key` / `value`        |
| `...blocks.j.attn.relative_position_*`           | `...blocks.j.attention.self.relative_position_*`            |
| `...blocks.j.attn.proj`                          | `...blocks.j.attention.output.dense`                        |
| `...blocks.j.mlp.fc1` / `fc2`                    | `...blocks.j.intermediate.dense` / `output.dense`           |
| `audio_branch.patch_embed.*`, `layers.i.downsample.*`, `norm.*` | `audio_model.audio_encoder.*` (same names)   |

Dropped, because transformers has no counterpart or computes them itself: the torchlibrosa front end
(`audio_branch.spectrogram_extractor`, `audio_branch.logmel_extractor`; `ClapFeatureExtractor` computes the
log-mel instead), the AudioSet tagging head (`audio_branch.tscam_conv`, `audio_branch.head`), the training-only
MLPs `audio_transform` / `text_transform`, and the Swin shift masks (`...blocks.j.attn_mask`).
Not supported (clear error): checkpoints with a CLIP-style text tower (`transformer` text model) or a PANN
audio tower, which `ClapModel` cannot represent.

The checkpoint carries no architecture description, so the caller supplies a transformers config: a folder
with `config.json` (for instance a copy of the Hugging Face `laion/larger_clap_music` or
`laion/clap-htsat-unfused` folder without its weights; its `preprocessor_config.json` and tokenizer files are
then used too) or one of the named configs in `NAMED_CONFIGS`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import ClapConfig, ClapModel

# LAION's HTSAT-tiny (the 630k / audioset checkpoints) and HTSAT-base (the music_* checkpoints), with the
# roberta-base text tower: transformers' ClapConfig defaults are HTSAT-tiny + roberta-base.
NAMED_CONFIGS: dict[str, dict] = {
    "htsat-tiny": {},
    "htsat-base": {"audio_config": {"patch_embeds_hidden_size": 128, "depths": [2, 2, 12, 2], "hidden_size": 1024}},
}
DROPPED_PREFIXES = (
    "audio_branch.spectrogram_extractor.",
    "audio_branch.logmel_extractor.",
    "audio_branch.tscam_conv.",
    "audio_branch.head.",
    "audio_transform.",
    "text_transform.",
)
UNSUPPORTED_PREFIXES = ("token_embedding.", "positional_embedding", "ln_final.", "text_branch.resblocks.",
                        "audio_branch.conv_block1.")
BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
    "attn.relative_position_index": "attention.self.relative_position_index",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
# Buffers transformers builds itself; a LAION checkpoint need not hold them.
OPTIONAL_TARGET_KEYS = re.compile(r"text_model\.embeddings\.(position_ids|token_type_ids)")
AUDIO_PREFIX = "audio_model.audio_encoder."
_BLOCK_KEY = re.compile(r"(layers\.\d+\.blocks\.\d+)\.(.+)\.(weight|bias|relative_position_bias_table|"
                        r"relative_position_index)")
_PROJECTION_KEY = re.compile(r"(text|audio)_projection\.([02])\.(weight|bias)")


class LaionCheckpointError(ValueError):
    """A LAION checkpoint that cannot be mapped onto the given transformers config; names the file."""


def read_laion_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The LAION state dict in `path` (.pt/.ckpt torch pickle read with weights_only=True, or .safetensors),
    unwrapped from `{"state_dict": ...}` and stripped of a `module.` prefix."""
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 — torch raises several types for a refused pickle
            raise LaionCheckpointError(
                f"{path}: not loadable with torch.load(weights_only=True) ({type(exc).__name__}: {exc}); "
                "re-save its state_dict as .safetensors"
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LaionCheckpointError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _audio_branch_key(rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map one `audio_branch.<rest>` entry to its transformers key(s); splits fused qkv into three."""
    if rest.startswith("bn0."):
        return {AUDIO_PREFIX + "batch_norm." + rest.removeprefix("bn0."): tensor}
    match = _BLOCK_KEY.fullmatch(rest)
    if match is None:
        return {AUDIO_PREFIX + rest: tensor}
    block, module, leaf = match.groups()
    if module == "attn.qkv":
        query, key, value = tensor.chunk(3, dim=0)
        base = f"{AUDIO_PREFIX}{block}.attention.self"
        return {f"{base}.query.{leaf}": query, f"{base}.key.{leaf}": key, f"{base}.value.{leaf}": value}
    if leaf.startswith("relative_position"):
        module, leaf = f"{module}.{leaf}", ""
    if module not in BLOCK_RENAMES:
        raise LaionCheckpointError(f"unknown HTSAT block entry audio_branch.{rest}")
    return {f"{AUDIO_PREFIX}{block}.{BLOCK_RENAMES[module]}" + (f".{leaf}" if leaf else ""): tensor}


def laion_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a LAION CLAP state dict to transformers' `ClapModel` layout (see the module docstring)."""
    unsupported = [k for k in state if k.startswith(UNSUPPORTED_PREFIXES)]
    if unsupported:
        raise LaionCheckpointError(
            f"checkpoint has a tower transformers' ClapModel cannot hold (CLIP-style text or PANN audio), "
            f"e.g. {unsupported[0]!r}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(DROPPED_PREFIXES) or key.endswith(".attn_mask"):
            continue
        if key in ("logit_scale_a", "logit_scale_t"):
            mapped[key] = tensor
        elif match := _PROJECTION_KEY.fullmatch(key):
            tower, index, leaf = match.groups()
            mapped[f"{tower}_projection.linear{1 if index == '0' else 2}.{leaf}"] = tensor
        elif key.startswith("text_branch."):
            mapped["text_model." + key.removeprefix("text_branch.")] = tensor
        elif key.startswith("audio_branch."):
            mapped.update(_audio_branch_key(key.removeprefix("audio_branch."), tensor))
        else:
            raise LaionCheckpointError(f"unexpected entry {key!r}: not part of the LAION CLAP layout")
    return mapped


def laion_config(config: str | Path, state: dict[str, torch.Tensor]) -> tuple[ClapConfig, Path | None]:
    """The transformers config for a LAION checkpoint: a named config (fusion switched on when the checkpoint
    holds the fusion layers) or a folder holding config.json. Returns (config, that folder or None)."""
    if str(config) in NAMED_CONFIGS:
        settings = {key: dict(value) for key, value in NAMED_CONFIGS[str(config)].items()}
        fused = any(".patch_embed.fusion_model." in key for key in state)
        settings.setdefault("audio_config", {})["enable_fusion"] = fused
        return ClapConfig(**settings), None
    folder = Path(config).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"clap: config {str(config)!r} is neither a named config ({', '.join(NAMED_CONFIGS)}) nor a folder "
            f"holding a transformers CLAP config.json"
        )
    return ClapConfig.from_pretrained(folder, local_files_only=True), folder


def load_laion_checkpoint(path: Path, config: str | Path) -> tuple[ClapModel, Path | None]:
    """A float32 `ClapModel` in eval mode holding the LAION checkpoint at `path`, built from `config` (see
    `laion_config`). Raises LaionCheckpointError naming the file when entries are missing, unknown or of the
    wrong shape for the config."""
    state = read_laion_state_dict(path)
    try:
        mapped = laion_to_transformers(state)
    except LaionCheckpointError as exc:
        raise LaionCheckpointError(f"{path}: {exc}") from None
    clap_config, folder = laion_config(config, state)
    with torch.device("meta"):  # shapes only: a mismatch is reported before any memory is spent
        expected = ClapModel(clap_config).state_dict()
    unknown = sorted(set(mapped) - set(expected))
    missing = sorted(k for k in set(expected) - set(mapped) if not OPTIONAL_TARGET_KEYS.fullmatch(k))
    wrong_shape = sorted(k for k in set(mapped) & set(expected) if mapped[k].shape != expected[k].shape)
    if unknown or missing or wrong_shape:
        raise LaionCheckpointError(
            f"{path} does not match the CLAP config {str(config)!r}: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unknown)} unknown (e.g. {unknown[:2]}), {len(wrong_shape)} of another "
            f"shape (e.g. {wrong_shape[:2]}); pick the config of the model this checkpoint was trained as"
        )
    model = ClapModel(clap_config)
    model.load_state_dict(mapped, strict=False)
    return model.float().eval(), folder
