"""Dagster resources: where outputs live, and which catalog the pipeline reads."""

import os
from pathlib import Path

import dagster as dg

from catalog.demo import DemoConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


# `MUSICREC_DEMO_SIZE` picks the size of the default demo catalog: "full" (DemoConfig's defaults, the demo)
# or "tiny" (4 artists x 3 tracks, 40 listeners, 6 pieces, 3-second clips, 2 batches: renders in seconds;
# the web-UI test and quick manual checks use it). Read once, when this module is imported.
DEMO_SIZES: dict[str, DemoConfig] = {
    "full": DemoConfig(),
    "tiny": DemoConfig(n_artists=4, tracks_per_artist=3, n_pieces=6, n_users=40, n_batches=2, clip_seconds=3.0),
}


def demo_config_from_env() -> DemoConfig:
    """The DemoConfig named by `MUSICREC_DEMO_SIZE` (default "full"); ValueError for an unknown name."""
    size = os.environ.get("MUSICREC_DEMO_SIZE", "full") or "full"
    if size not in DEMO_SIZES:
        raise ValueError(f"MUSICREC_DEMO_SIZE must be one of {sorted(DEMO_SIZES)}, got {size!r}")
    return DEMO_SIZES[size]


_DEMO = demo_config_from_env()


def default_storage_root() -> str:
    """`MUSICREC_STORAGE` if set, else `storage/` in the repository."""
    return os.environ.get("MUSICREC_STORAGE", str(REPO_ROOT / "storage"))


class StorageResource(dg.ConfigurableResource):
    """All pipeline outputs live under `root` (see storage/README.md for the layout)."""

    root: str = default_storage_root()

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)


class CatalogResource(dg.ConfigurableResource):
    """The catalog to read: the generated demo catalog (`source="demo"`) or a folder of audio files
    (`source="folder"`, `folder` + optional `metadata_csv`, and optional Parquet files of the other contract
    tables: `artists`, `interactions`, `artist_edges`, `queries`). The demo's size fields mirror `DemoConfig`;
    their defaults follow `MUSICREC_DEMO_SIZE` (see DEMO_SIZES)."""

    source: str = "demo"
    folder: str = ""
    metadata_csv: str = ""
    artists: str = ""
    interactions: str = ""
    artist_edges: str = ""
    queries: str = ""
    seed: int = _DEMO.seed
    n_artists: int = _DEMO.n_artists
    tracks_per_artist: int = _DEMO.tracks_per_artist
    n_pieces: int = _DEMO.n_pieces
    n_users: int = _DEMO.n_users
    mean_plays_per_user: float = _DEMO.mean_plays_per_user
    n_batches: int = _DEMO.n_batches
    clip_seconds: float = _DEMO.clip_seconds

    def demo_config(self) -> DemoConfig:
        return DemoConfig(
            seed=self.seed, n_artists=self.n_artists, tracks_per_artist=self.tracks_per_artist,
            n_pieces=self.n_pieces, n_users=self.n_users, mean_plays_per_user=self.mean_plays_per_user,
            n_batches=self.n_batches, clip_seconds=self.clip_seconds,
        )
