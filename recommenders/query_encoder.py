"""A lean query encoder for BERT-family sentence-transformers folders: the same vectors as `TextBiEncoder.encode`
(within float32 rounding) while importing only torch, safetensors and `tokenizers`, so a one-off
`musicrec search` skips the seconds sentence-transformers and transformers take to import.

    if LeanQueryEncoder.supports(folder):
        encoder = LeanQueryEncoder.load(folder)
        vectors = encoder.encode(["a calm piano piece"])   # float32 (1, dim), unit L2 norm when the folder normalises

Supported folders (`supports`): a Transformer module at the folder root whose config.json says model_type "bert"
with absolute positions and exact-erf GELU, weights in model.safetensors, a tokenizer.json, then one Pooling
module (mean or CLS) and optionally a Normalize module -- nothing else (no Dense, no default prompt).

Pipeline, for a batch of n texts padded to the longest, L tokens (L <= max_seq_length):
    tokenizer.json (truncation to max_seq_length; [CLS] ... [SEP] by its post-processor) -> ids (n, L)
    word + position + token-type embeddings, LayerNorm                               -> (n, L, hidden)
    each layer: self-attention (scaled_dot_product_attention, padding masked), dense + residual + LayerNorm,
                intermediate dense + GELU, output dense + residual + LayerNorm         -> (n, L, hidden)
    pooling (mean over non-padding tokens, or the [CLS] token), optional L2 normalise -> (n, hidden)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from tokenizers import Tokenizer

WEIGHTS_FILE, TOKENIZER_FILE, MODULES_FILE = "model.safetensors", "tokenizer.json", "modules.json"
_POOLING_MODES = ("mean", "cls")
_LAYER_KEYS = (
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias",
)
_EMBEDDING_KEYS = (
    "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
)


@dataclass(frozen=True)
class FolderPlan:
    """What a supported folder asks for: BERT hyperparameters (config.json), the token budget, the pooling
    ("mean" or "cls") and whether vectors are L2-normalised."""

    hidden_size: int
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    max_seq_length: int  # tokens per text including [CLS] and [SEP]
    pooling: str
    normalize: bool
    lowercase: bool  # sentence_bert_config's do_lower_case: lowercase texts before tokenizing


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _module_kind(entry: dict) -> str:
    """"Transformer", "Pooling", "Normalize", ... from a modules.json entry's dotted class path."""
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def _pooling_mode(config: dict) -> str | None:
    """"mean" or "cls" from a 1_Pooling/config.json in the old (boolean flags) or new ("pooling_mode") form;
    None for anything else (max, weighted, several modes at once)."""
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        return mode if mode in _POOLING_MODES else None
    flags = {key.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens"): bool(value)
             for key, value in config.items() if key.startswith("pooling_mode_")}
    on = [name for name, value in flags.items() if value]
    return on[0] if len(on) == 1 and on[0] in _POOLING_MODES else None


def _max_seq_length(folder: Path, bert: dict, st_config: dict) -> int:
    """sentence_bert_config's max_seq_length; else the tokenizer's model_max_length capped at the position table
    (what sentence-transformers does)."""
    positions = int(bert.get("max_position_embeddings", 512))
    if st_config.get("max_seq_length"):
        return int(st_config["max_seq_length"])
    tokenizer_config = _read_json(folder / "tokenizer_config.json") or {}
    model_max = tokenizer_config.get("model_max_length") or positions
    return int(min(model_max, positions))


def plan_folder(folder: str | Path) -> FolderPlan | None:
    """The `FolderPlan` of a sentence-transformers folder this module can run, or None when it cannot."""
    folder = Path(folder)
    modules = _read_json(folder / MODULES_FILE)
    bert = _read_json(folder / "config.json")
    if not isinstance(modules, list) or not isinstance(bert, dict) or len(modules) not in (2, 3):
        return None
    if not ((folder / WEIGHTS_FILE).is_file() and (folder / TOKENIZER_FILE).is_file()):
        return None
    kinds = [_module_kind(m) for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]) or modules[0].get("path"):
        return None
    if (bert.get("model_type") != "bert" or bert.get("hidden_act") != "gelu"
            or bert.get("position_embedding_type", "absolute") != "absolute"):
        return None
    st_meta = _read_json(folder / "config_sentence_transformers.json") or {}
    if st_meta.get("default_prompt_name"):
        return None
    pooling = _pooling_mode(_read_json(folder / str(modules[1].get("path", "1_Pooling")) / "config.json") or {})
    if pooling is None:
        return None
    st_config = _read_json(folder / "sentence_bert_config.json") or {}
    hidden, heads = int(bert["hidden_size"]), int(bert["num_attention_heads"])
    if hidden % heads:
        return None
    return FolderPlan(hidden, int(bert["num_hidden_layers"]), heads, float(bert.get("layer_norm_eps", 1e-12)),
                      _max_seq_length(folder, bert, st_config), pooling, kinds[2:] == ["Normalize"],
                      bool(st_config.get("do_lower_case", False)))


def _checkpoint_keys(path: Path) -> tuple[set[str], str]:
    """The tensor names of a safetensors file (header only) and the prefix ("" or "bert.") of its BERT keys."""
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in keys else ""
    return keys, prefix


def _required_keys(num_layers: int) -> list[str]:
    return [*_EMBEDDING_KEYS, *(f"encoder.layer.{i}.{key}" for i in range(num_layers) for key in _LAYER_KEYS)]


class LeanQueryEncoder:
    """BERT sentence encoder in plain torch: `encode(texts)` -> float32 (n, hidden), pooled and (when the folder
    has a Normalize module) L2-normalised, as sentence-transformers computes it for the same folder."""

    name = "lean-biencoder"

    def __init__(self, tokenizer: Tokenizer, weights: dict[str, torch.Tensor], plan: FolderPlan,
                 batch_size: int = 64, source: str = "") -> None:
        self.tokenizer = tokenizer
        self.weights = weights  # checkpoint names without a "bert." prefix; query/key/value fused as "qkv"
        self.plan = plan
        self.batch_size = batch_size
        self.source = source

    @staticmethod
    def supports(folder: str | Path) -> bool:
        """Whether `folder` is a sentence-transformers folder this encoder reproduces: BERT (absolute positions,
        erf GELU), mean or CLS pooling, optional Normalize, model.safetensors holding every BERT weight."""
        plan = plan_folder(folder)
        if plan is None:
            return False
        try:
            keys, prefix = _checkpoint_keys(Path(folder) / WEIGHTS_FILE)
        except Exception:  # an unreadable or foreign file: not ours to run
            return False
        return all(prefix + key in keys for key in _required_keys(plan.num_layers))

    @classmethod
    def load(cls, folder: str | Path, batch_size: int = 64) -> "LeanQueryEncoder":
        """Read the tokenizer, hyperparameters and float32 weights of a folder `supports` accepts."""
        folder = Path(folder)
        plan = plan_folder(folder)
        if plan is None or not cls.supports(folder):
            raise ValueError(f"{folder}: not a BERT sentence-transformers folder the lean encoder supports")
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tokenizer.enable_truncation(plan.max_seq_length)
        tokenizer.no_padding()  # padded per batch below
        _, prefix = _checkpoint_keys(folder / WEIGHTS_FILE)
        weights = {}
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
            for key in _required_keys(plan.num_layers):
                weights[key] = handle.get_tensor(prefix + key).to(torch.float32)
        for i in range(plan.num_layers):
            p = f"encoder.layer.{i}.attention.self."
            for part in ("weight", "bias"):  # one (3 * hidden, hidden) projection instead of three
                weights[f"{p}qkv.{part}"] = torch.cat([weights.pop(f"{p}{m}.{part}")
                                                       for m in ("query", "key", "value")])
        return cls(tokenizer, weights, plan, batch_size, str(folder))

    @property
    def dim(self) -> int:
        return self.plan.hidden_size

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """int64 ids, token types and bool attention mask, each (n, L): right-padded to the longest text."""
        if self.plan.lowercase:
            texts = [t.lower() for t in texts]
        encodings = self.tokenizer.encode_batch(list(texts))
        length = max(len(e.ids) for e in encodings)
        ids = torch.zeros((len(encodings), length), dtype=torch.int64)
        types = torch.zeros_like(ids)
        mask = torch.zeros((len(encodings), length), dtype=torch.bool)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = torch.tensor(enc.ids)
            types[row, :n] = torch.tensor(enc.type_ids)
            mask[row, :n] = True
        return ids, types, mask

    def token_states(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states, float32 (n, L, hidden), for ids/types/mask of shape (n, L)."""
        w, plan = self.weights, self.plan
        n, length = ids.shape
        heads, head_dim = plan.num_heads, plan.hidden_size // plan.num_heads
        shape = (plan.hidden_size,)
        x = (F.embedding(ids, w["embeddings.word_embeddings.weight"])
             + w["embeddings.position_embeddings.weight"][:length]
             + F.embedding(types, w["embeddings.token_type_embeddings.weight"]))
        x = F.layer_norm(x, shape, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                         plan.layer_norm_eps)
        attend = mask[:, None, None, :]  # (n, 1, 1, L): every query position sees the non-padding keys
        for i in range(plan.num_layers):
            p = f"encoder.layer.{i}."
            qkv = F.linear(x, w[p + "attention.self.qkv.weight"], w[p + "attention.self.qkv.bias"])
            q, k, v = qkv.view(n, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # each (n, heads, L, d)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(n, length, plan.hidden_size)
            x = F.layer_norm(F.linear(context, w[p + "attention.output.dense.weight"],
                                      w[p + "attention.output.dense.bias"]) + x,
                             shape, w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], plan.layer_norm_eps)
            inner = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            x = F.layer_norm(F.linear(inner, w[p + "output.dense.weight"], w[p + "output.dense.bias"]) + x,
                             shape, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                             plan.layer_norm_eps)
        return x

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim): pooled sentence vectors, unit L2 norm when the folder normalises."""
        if isinstance(texts, str):
            raise TypeError("encode: pass a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                ids, types, mask = self.tokenize(texts[start:start + self.batch_size])
                states = self.token_states(ids, types, mask)
                if self.plan.pooling == "cls":
                    pooled = states[:, 0]
                else:
                    weights = mask.unsqueeze(-1).to(states.dtype)
                    pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                if self.plan.normalize:
                    pooled = F.normalize(pooled, p=2.0, dim=1)
                out.append(pooled.numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
