"""The Dagster resource every asset reads: where the experiment's outputs live."""
from pathlib import Path

import dagster as dg


class StorageResource(dg.ConfigurableResource):
    """All outputs of one experiment live under `root` (the experiment file's `storage`; layout in
    storage/README.md)."""

    root: str

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)
