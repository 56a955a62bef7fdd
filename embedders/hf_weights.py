"""Local weights for the transformers-based backbones (clap, hf_audio): where they are, what they hash to,
and which device and precision run them. Weights come from a local path only, never from a model hub.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from catalog.ingest import sha256_of

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt")


def resolve_weights(weights: str | Path | None, backbone: str, expected: str) -> Path:
    """The weights path of the `weights` option. Raises FileNotFoundError naming the option and `expected`
    (what to put there) when it is not set or the path does not exist."""
    if not weights:
        raise FileNotFoundError(f"{backbone}: no weights given; set the `weights` option to {expected}")
    path = Path(weights).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{backbone}: {path} (the `weights` option) does not exist; expected {expected}")
    return path


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file; for a folder, of its weight files: the file's own hash when there is one
    (so it equals `sha256sum model.safetensors`), else the hash of the sorted "name hash" lines of all shards.
    Raises FileNotFoundError when a folder holds no weight file."""
    if path.is_file():
        return sha256_of(path)
    files = sorted({f for pattern in WEIGHT_PATTERNS for f in path.glob(pattern) if f.is_file()})
    if not files:
        raise FileNotFoundError(f"{path}: no weight file ({', '.join(WEIGHT_PATTERNS)}) in this folder")
    if len(files) == 1:
        return sha256_of(files[0])
    lines = "".join(f"{f.name} {sha256_of(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def torch_device(device: str | torch.device | None) -> torch.device:
    """`device` as given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA, float32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32
