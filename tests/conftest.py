"""Shared fixtures: a tiny rendered demo catalog (built once per test session) and writers for small audio
files (sine, silent, corrupt, empty) used by the ingestion and embedding tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from catalog.demo import DemoConfig, build_demo_catalog

REPO_ROOT = Path(__file__).resolve().parent.parent

# 4 artists x 3 tracks, 40 listeners, 3-second clips, 2 catalog batches: renders in a few seconds.
TINY = DemoConfig(seed=0, n_artists=4, tracks_per_artist=3, n_pieces=6, n_users=40, n_batches=2, clip_seconds=3.0)


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
