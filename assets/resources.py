"""The Dagster resource every asset reads: where the experiment's outputs live."""
from pathlib import Path

import dagster as dg


class StorageResource(dg.ConfigurableResource):
    """All outputs of one experiment live under `root` (the experiment file's `storage`; layout in
    storage/README.md)."""

    root: str

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)


# Resource key of the IO manager for values passed between the steps of one asset (the batch names and failure
# counts of the per-batch embedding steps): small pickles under <storage>/steps/<run id>/, readable by every
# worker that shares the storage.
STEP_IO = "step_io"
