"""Dagster resources: where outputs live, and which catalog the pipeline reads."""

import os
from pathlib import Path

import dagster as dg

from catalog.demo import DemoConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    (`source="folder"`, `folder` + optional `metadata_csv`). The demo's size fields mirror `DemoConfig`."""

    source: str = "demo"
    folder: str = ""
    metadata_csv: str = ""
    seed: int = DemoConfig.seed
    n_artists: int = DemoConfig.n_artists
    tracks_per_artist: int = DemoConfig.tracks_per_artist
    n_pieces: int = DemoConfig.n_pieces
    n_users: int = DemoConfig.n_users
    mean_plays_per_user: float = DemoConfig.mean_plays_per_user
    n_batches: int = DemoConfig.n_batches
    clip_seconds: float = DemoConfig.clip_seconds

    def demo_config(self) -> DemoConfig:
        return DemoConfig(
            seed=self.seed, n_artists=self.n_artists, tracks_per_artist=self.tracks_per_artist,
            n_pieces=self.n_pieces, n_users=self.n_users, mean_plays_per_user=self.mean_plays_per_user,
            n_batches=self.n_batches, clip_seconds=self.clip_seconds,
        )
