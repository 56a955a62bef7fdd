"""A lean query encoder for BERT-family sentence-transformers folders: the same vectors as `TextBiEncoder.encode`
(within float32 rounding, ~1e-6) computed in numpy, importing only numpy, safetensors.numpy and `tokenizers` -- no
torch, transformers or sentence-transformers -- so a one-off `musicrec search` starts in well under a second.
With `precision="bfloat16"` (for a long-running server) the linear layers run as bfloat16 products in torch's
oneDNN instead: half the weight bytes to stream per batch, vectors within about 1e-4 of the float32 ones
(`benchmarks/serve.py` reports the speed, `tests/test_query_encoder.py` the agreement).

    if LeanQueryEncoder.supports(folder):
        encoder = LeanQueryEncoder.load(folder)
        vectors = encoder.encode(["a calm piano piece"])   # float32 (1, dim), unit L2 norm when the folder normalises

Supported folders (`supports`): a Transformer module at the folder root whose config.json says model_type "bert"
with absolute positions and exact-erf GELU, float weights (F32/F16/F64) in model.safetensors, a tokenizer.json, then
one Pooling module (mean or CLS) and optionally a Normalize module -- nothing else (no Dense, no default prompt).

Pipeline, for a batch of n texts padded to the longest, L tokens (L <= max_seq_length), all float32:
    tokenizer.json (truncation to max_seq_length; [CLS] ... [SEP] by its post-processor) -> ids (n, L)
    word + position + token-type embeddings, LayerNorm                               -> (n, L, hidden)
    each layer: self-attention (softmax(q k^T / sqrt(d)), padding keys masked), dense + residual + LayerNorm,
                intermediate dense + GELU (erf, see `gelu`), output dense + residual + LayerNorm -> (n, L, hidden)
    pooling (mean over non-padding tokens, or the [CLS] token), optional L2 normalise -> (n, hidden)
"""
from __future__ import annotations

import functools
import json
import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

WEIGHTS_FILE, TOKENIZER_FILE, MODULES_FILE = "model.safetensors", "tokenizer.json", "modules.json"
_POOLING_MODES = ("mean", "cls")
PRECISIONS = ("float32", "bfloat16")  # what the linear layers compute in
SERVER_PRECISIONS = ("auto", *PRECISIONS)  # what a server may ask for (`resolve_precision`)
_FLOAT_DTYPES = ("F16", "F32", "F64")  # what numpy reads (bfloat16 is not): other folders fall back
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


def _checkpoint_dtypes(path: Path) -> tuple[dict[str, str], str]:
    """Tensor name -> safetensors dtype ("F32", ...) from a safetensors file's header (8-byte little-endian length,
    then JSON), and the prefix ("" or "bert.") of its BERT keys."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    dtypes = {name: str(entry["dtype"]) for name, entry in header.items() if name != "__metadata__"}
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in dtypes else ""
    return dtypes, prefix


def _required_keys(num_layers: int) -> list[str]:
    return [*_EMBEDDING_KEYS, *(f"encoder.layer.{i}.{key}" for i in range(num_layers) for key in _LAYER_KEYS)]


# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z >= 0: Chebyshev fit with fractional error < 1.2e-7 for every
# z (Numerical Recipes, erfcc); P's coefficients, constant term first
_ERFC_COEFFICIENTS = tuple(np.float32(c) for c in (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223,
    0.17087277))
_GELU_BLOCK = 32768  # elements per block: the temporaries of one block stay in the CPU cache


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact-erf GELU, x * Phi(x), of a float32 array of any shape -> float32, same shape; within 2.5e-7 of the
    exact function (about the float32 rounding of the output). Computed in cache-sized blocks of elements.

    With a = |x| and h = Phi(-a) = erfc(a / sqrt 2) / 2: x * Phi(x) = max(x, 0) - a * h on both sides (x >= 0:
    x (1 - h); x < 0: x h), so large negative inputs keep erfc's small relative error."""
    x = np.asarray(x, dtype=np.float32)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, flat.size, _GELU_BLOCK):
        block, end = flat[start:start + _GELU_BLOCK], start + _GELU_BLOCK
        a = np.abs(block)
        t = a * np.float32(0.5 * math.sqrt(0.5))  # z / 2 with z = a / sqrt 2
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        poly = t * _ERFC_COEFFICIENTS[-1]
        poly += _ERFC_COEFFICIENTS[-2]
        for coefficient in _ERFC_COEFFICIENTS[-3::-1]:
            poly *= t
            poly += coefficient
        square = a * a
        square *= np.float32(0.5)  # z^2
        poly -= square
        np.exp(poly, out=poly)
        poly *= t  # erfc(z)
        poly *= a
        poly *= np.float32(0.5)  # a * h
        np.maximum(block, np.float32(0.0), out=out[start:end])
        out[start:end] -= poly
    return out.reshape(x.shape)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis of float32 (..., hidden), biased variance: -> float32 (..., hidden)."""
    centred = x - x.mean(-1, keepdims=True)
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    variance += np.float32(eps)
    centred /= np.sqrt(variance)
    centred *= weight
    centred += bias
    return centred


def _linear(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x (..., in) @ weight_t (in, out) + bias (out,) -> (..., out): torch.nn.functional.linear with the weight
    stored transposed (C-contiguous (in, out): for a few query tokens OpenBLAS runs this product about 2x faster
    than through a transposed (out, in) view), one 2-D BLAS product over all leading axes."""
    out = x.reshape(-1, x.shape[-1]) @ weight_t
    out += bias
    return out.reshape(*x.shape[:-1], weight_t.shape[1])


class _BFloat16Linears:
    """The encoder's linear layers as bfloat16 products in torch's oneDNN, weights packed once for its kernels:
    float32 (..., in) -> float32 (..., out), accumulated in float32, inputs and weights rounded to bfloat16."""

    pack_rows = 16  # the batch size (tokens) oneDNN lays the packed weights out for; any size still works

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        import torch

        if not torch.backends.mkldnn.is_available():
            raise RuntimeError("bfloat16 queries need torch's oneDNN (mkldnn) backend, which this torch lacks")
        from recommenders.index import native_bfloat16

        if not native_bfloat16():
            log.warning("this CPU has no native bfloat16 products: bfloat16 queries will be slower than float32")
        self._torch = torch
        self._packed = {
            name.removesuffix(".weight"): (
                torch.ops.mkldnn._reorder_linear_weight(torch.from_numpy(weight.T.copy()).bfloat16(), self.pack_rows),
                torch.from_numpy(weights[name.removesuffix(".weight") + ".bias"]).bfloat16())
            for name, weight in weights.items() if name.endswith(("qkv.weight", "dense.weight"))}

    @property
    def layers(self) -> set[str]:
        """The names of the linear layers (their weights' names without ".weight")."""
        return set(self._packed)

    def __call__(self, x: np.ndarray, layer: str) -> np.ndarray:
        """`layer` (a weight name without ".weight") applied to float32 x (..., in)."""
        torch = self._torch
        packed, bias = self._packed[layer]
        flat = torch.from_numpy(np.ascontiguousarray(x).reshape(-1, x.shape[-1])).bfloat16()
        out = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "").float().numpy()
        return out.reshape(*x.shape[:-1], out.shape[1])


def check_precision(name: str, allowed: tuple[str, ...] = PRECISIONS, what: str = "precision") -> str:
    """`name` when it is one of `allowed`; else ValueError naming `what` and the allowed values."""
    if name not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {name!r}")
    return name


def resolve_precision(name: str) -> str:
    """One of PRECISIONS for one of SERVER_PRECISIONS: "auto" is "bfloat16" where the CPU multiplies bfloat16
    natively (asking imports torch), else "float32"."""
    if check_precision(name, SERVER_PRECISIONS) != "auto":
        return name
    from recommenders.index import native_bfloat16

    return "bfloat16" if native_bfloat16() else "float32"


@functools.cache
def _thread_pools():
    """threadpoolctl's controller of the BLAS/OpenMP libraries loaded so far (numpy's among them), made once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class LeanQueryEncoder:
    """BERT sentence encoder in numpy: `encode(texts)` -> float32 (n, hidden), pooled and (when the folder has a
    Normalize module) L2-normalised, as sentence-transformers computes it for the same folder.

    `encode` runs the BLAS products on `threads` thread(s) (default 1): queries are short, and on a small shared
    CPU waking BLAS threads for (tokens x 384) products costs more than it saves (a 2-word query: ~0.35 s with
    numpy's default 2 OpenBLAS threads on a busy 2-core machine, ~0.015 s with one); the serving worker also
    keeps the other core for the server. `precision`: one of PRECISIONS, what the linear layers compute in
    (module docstring); "bfloat16" imports torch."""

    name = "lean-biencoder"

    def __init__(self, tokenizer: Tokenizer, weights: dict[str, np.ndarray], plan: FolderPlan,
                 batch_size: int = 64, source: str = "", threads: int = 1, precision: str = "float32") -> None:
        check_precision(precision)
        self.tokenizer = tokenizer
        # float32 arrays, checkpoint names without a "bert." prefix; q/k/v fused as "qkv"; the linear layers'
        # weights transposed to (in, out)
        self.weights = weights
        self.plan = plan
        self.batch_size = batch_size
        self.source = source
        self.threads = threads
        self.precision = precision
        self._bfloat16 = _BFloat16Linears(weights) if precision == "bfloat16" else None
        if self._bfloat16 is not None:  # its packed copies replace the float32 linear layers
            self.weights = {name: value for name, value in weights.items()
                            if name.rsplit(".", 1)[0] not in self._bfloat16.layers}

    @staticmethod
    def supports(folder: str | Path) -> bool:
        """Whether `folder` is a sentence-transformers folder this encoder reproduces: BERT (absolute positions,
        erf GELU), mean or CLS pooling, optional Normalize, model.safetensors holding every BERT weight as F16, F32
        or F64."""
        plan = plan_folder(folder)
        if plan is None:
            return False
        try:
            dtypes, prefix = _checkpoint_dtypes(Path(folder) / WEIGHTS_FILE)
        except Exception:  # an unreadable or foreign file: not ours to run
            return False
        return all(dtypes.get(prefix + key) in _FLOAT_DTYPES for key in _required_keys(plan.num_layers))

    @classmethod
    def load(cls, folder: str | Path, batch_size: int = 64, threads: int = 1,
             precision: str = "float32") -> "LeanQueryEncoder":
        """Read the tokenizer, hyperparameters and float32 weights of a folder `supports` accepts."""
        folder = Path(folder)
        plan = plan_folder(folder)
        if plan is None or not cls.supports(folder):
            raise ValueError(f"{folder}: not a BERT sentence-transformers folder the lean encoder supports")
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tokenizer.enable_truncation(plan.max_seq_length)
        tokenizer.no_padding()  # padded per batch below
        _, prefix = _checkpoint_dtypes(folder / WEIGHTS_FILE)
        tensors = load_file(str(folder / WEIGHTS_FILE))
        weights = {key: np.ascontiguousarray(tensors[prefix + key], dtype=np.float32)
                   for key in _required_keys(plan.num_layers)}
        del tensors
        for i in range(plan.num_layers):
            p = f"encoder.layer.{i}.attention.self."
            for part in ("weight", "bias"):  # one (3 * hidden, hidden) projection instead of three
                weights[f"{p}qkv.{part}"] = np.concatenate([weights.pop(f"{p}{m}.{part}")
                                                            for m in ("query", "key", "value")])
        for key in [k for k in weights if k.endswith(("qkv.weight", "dense.weight"))]:
            weights[key] = np.ascontiguousarray(weights[key].T)  # (in, out) for `_linear`
        return cls(tokenizer, weights, plan, batch_size, str(folder), threads, precision)

    @property
    def dim(self) -> int:
        return self.plan.hidden_size

    def _linear(self, x: np.ndarray, layer: str) -> np.ndarray:
        """The linear layer `layer` (its weight's name without ".weight") of float32 x (..., in), in `precision`."""
        if self._bfloat16 is not None:
            return self._bfloat16(x, layer)
        return _linear(x, self.weights[layer + ".weight"], self.weights[layer + ".bias"])

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """int64 ids, int64 token types and bool attention mask, each (n, L): right-padded to the longest text."""
        if self.plan.lowercase:
            texts = [t.lower() for t in texts]
        encodings = self.tokenizer.encode_batch(list(texts))
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(encodings), length), dtype=bool)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
            mask[row, :n] = True
        return ids, types, mask

    def token_states(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The encoder's last hidden states, float32 (n, L, hidden), for ids/types/mask of shape (n, L); zeros at
        padding positions. The per-token work (products, LayerNorm, GELU) runs on the real tokens only, packed
        as (tokens, hidden); attention unpacks them to (n, L)."""
        w, plan = self.weights, self.plan
        n, length = ids.shape
        heads, head_dim, eps = plan.num_heads, plan.hidden_size // plan.num_heads, plan.layer_norm_eps
        real = np.flatnonzero(mask.reshape(-1))  # positions of the real tokens in the flattened (n * L) grid
        positions = np.broadcast_to(np.arange(length), (n, length)).reshape(-1)[real]
        x = (w["embeddings.word_embeddings.weight"][ids.reshape(-1)[real]]
             + w["embeddings.position_embeddings.weight"][positions]
             + w["embeddings.token_type_embeddings.weight"][types.reshape(-1)[real]])  # (tokens, hidden)
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        # (n, 1, 1, L) added to the scores: every query position sees the non-padding keys only
        key_bias = np.where(mask, np.float32(0.0), np.float32(-np.inf))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(head_dim))
        padded = np.zeros((n * length, 3 * plan.hidden_size), np.float32)
        for i in range(plan.num_layers):
            p = f"encoder.layer.{i}."
            padded[real] = self._linear(x, p + "attention.self.qkv")
            q, k, v = padded.reshape(n, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)  # each (n, heads, L, d)
            scores = (q * scale) @ k.transpose(0, 1, 3, 2)  # (n, heads, L, L)
            scores += key_bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, plan.hidden_size)[real]
            x = _layer_norm(self._linear(context, p + "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                            eps)
            inner = gelu(self._linear(x, p + "intermediate.dense"))
            x = _layer_norm(self._linear(inner, p + "output.dense") + x,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        states = np.zeros((n * length, plan.hidden_size), np.float32)
        states[real] = x
        return states.reshape(n, length, plan.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim): pooled sentence vectors, unit L2 norm when the folder normalises."""
        if isinstance(texts, str):
            raise TypeError("encode: pass a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        with _thread_pools().limit(limits=self.threads, user_api="blas"):
            for start in range(0, len(texts), self.batch_size):
                ids, types, mask = self.tokenize(texts[start:start + self.batch_size])
                states = self.token_states(ids, types, mask)
                if self.plan.pooling == "cls":
                    pooled = states[:, 0]
                else:
                    weights = mask[:, :, None].astype(np.float32)
                    pooled = (states * weights).sum(1) / np.maximum(weights.sum(1), np.float32(1e-9))
                if self.plan.normalize:
                    pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
                out.append(pooled)
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
