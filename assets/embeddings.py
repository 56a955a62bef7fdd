"""Embedding assets, one per registered backbone: `embeddings_<backbone>`.

Each writes `storage/embeddings/<backbone>/<catalog batch>.parquet` through the runner, which embeds only
the batches whose inputs or code changed. The asset's data version is the hash of the stored tables'
fingerprints, so downstream models are stale only when the embeddings really changed.
"""

import hashlib

import dagster as dg
import polars as pl

from catalog.io import read_metadata
from embedders.base import create_embedder
from embedders.runner import CODE_VERSION as RUNNER_VERSION
from embedders.runner import embed_catalog, embedding_files
from assets.automation import RERUN_WHEN_STALE
from assets.placement import GPU_BACKBONES, placement
from pipelines.resources import CatalogResource, StorageResource


def catalog_root(catalog: CatalogResource, storage: StorageResource):
    """The folder `tracks.audio_path` is relative to."""
    return storage.path("catalog", "demo") if catalog.source == "demo" else catalog.folder


def build_embedding_asset(backbone: str) -> dg.AssetsDefinition:
    embedder_version = create_embedder(backbone).version
    is_gpu = backbone in GPU_BACKBONES

    @dg.asset(
        name=f"embeddings_{backbone}",
        group_name="embeddings",
        code_version=f"{embedder_version}.{RUNNER_VERSION}",
        description=f"Track embeddings from the `{backbone}` backbone, one Parquet table per catalog batch.",
        **placement(is_gpu),
        kinds={"pytorch"} if is_gpu else {"python"},
        automation_condition=RERUN_WHEN_STALE,
    )
    def embeddings(
        context: dg.AssetExecutionContext, tracks: pl.DataFrame, catalog: CatalogResource, storage: StorageResource
    ) -> dg.MaterializeResult:
        out_dir = storage.path("embeddings", backbone)
        result = embed_catalog(create_embedder(backbone), tracks, catalog_root(catalog, storage), out_dir,
                               progress=context.log.info)
        files = embedding_files(out_dir)
        fingerprints = [read_metadata(f)["fingerprint"] for f in files]
        version = hashlib.sha256("".join(fingerprints).encode()).hexdigest()[:16]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                "embedded_batches": result.embedded, "skipped_batches": result.skipped,
                "removed_batches": result.removed, "failed_tracks": result.failures, "path": str(out_dir),
            },
        )

    return embeddings
