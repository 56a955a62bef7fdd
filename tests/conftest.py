"""Shared fixtures: a tiny rendered demo catalog (built once per test session) and writers for small audio
files (sine, silent, corrupt, empty) used by the ingestion and embedding tests."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from assets.catalog import DEMO_SIZES
from catalog.demo import DemoConfig, build_demo_catalog
from catalog.io import write_table

REPO_ROOT = Path(__file__).resolve().parent.parent

# the experiment file's tiny demo: 4 artists x 3 tracks, 40 listeners, 3-second clips, 2 catalog batches
TINY = DEMO_SIZES["tiny"]


@pytest.fixture(scope="session")
def tiny_config() -> DemoConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    """Root of the tiny demo catalog (audio/, metadata.csv and the contract tables). Read-only: copy it with
    `copy_catalog` before changing anything."""
    return build_demo_catalog(tmp_path_factory.mktemp("tiny_demo"), TINY)


def copy_catalog(source: Path, target: Path) -> Path:
    """A private copy of a built catalog (its `demo_config.json` stamp keeps `build_demo_catalog` from
    rebuilding it)."""
    shutil.copytree(source, target)
    return target


# ----------------------------------------------------------------------------------------------- audio files

def write_sine(
    path: Path, seconds: float = 1.0, sample_rate: int = 22050, freq: float = 440.0, channels: int = 1,
    amplitude: float = 0.5,
) -> Path:
    """A sine tone (same on every channel); the format follows the suffix (.wav, .flac, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    tone = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(str(path), np.repeat(tone[:, None], channels, axis=1), sample_rate)
    return path


def write_silent(path: Path, seconds: float = 1.0, sample_rate: int = 22050) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * sample_rate), np.float32), sample_rate)
    return path


def write_corrupt(path: Path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes under an audio suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return path


def write_empty_file(path: Path) -> Path:
    """A 0-byte file under an audio suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_header_only(path: Path, sample_rate: int = 22050) -> Path:
    """A valid audio header with no frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros((0, 1), np.float32), sample_rate)
    return path


# ------------------------------------------------------------------------------------------ a tone catalog

TONE_RATE = 16000


def write_tone(path: Path, frequency: float, seconds: float = 1.5) -> None:
    t = np.arange(int(seconds * TONE_RATE)) / TONE_RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), TONE_RATE)


def make_folder_catalog(root: Path) -> Path:
    """Two batches of tones (low and high), and listeners who each prefer one register. Returns the
    interactions Parquet path (track ids are `<batch>/<name>` as ingestion derives them)."""
    tracks = []
    for batch in ("b000", "b001"):
        for i in range(6):
            frequency = 110.0 * (1 + i % 3) if i < 3 else 1760.0 * (1 + i % 3)
            write_tone(root / batch / f"tone{i}.wav", frequency)
            tracks.append((f"{batch}/tone{i}", i < 3))
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        likes_low = u % 2 == 0
        liked = [t for t, low in tracks if low == likes_low]
        for j, track in enumerate(rng.permutation(liked)[:5]):
            rows.append((f"u{u:02d}", str(track),
                         datetime(2024, 1, 1) + timedelta(days=int(j * 7 + rng.integers(0, 3))), 1))
    interactions = pl.DataFrame(rows, schema=["user_id", "track_id", "timestamp", "count"], orient="row")
    return write_table(interactions.with_columns(pl.col("timestamp").cast(pl.Datetime("us"))), "interactions",
                       root.parent / "interactions.parquet")


# ----------------------------------------------------------------------------------------------- experiments

def demo_experiment(storage: Path, **overrides):
    """experiments/demo.yaml with its top-level keys replaced by `overrides`, its storage at `storage` and the
    tiny demo catalog (validated like a file the user wrote)."""
    import yaml

    from assets.experiment import parse_experiment

    path = REPO_ROOT / "experiments" / "demo.yaml"
    data = {**yaml.safe_load(path.read_text()), "storage": str(storage), "catalog": {"kind": "demo", "size": "tiny"},
            **overrides}
    if {"backbones", "recommenders", "baselines"} & set(overrides) and "serve" not in overrides:
        del data["serve"]  # the demo's served system may not exist in the overridden matrix
    return parse_experiment(data, str(path), path.parent)
