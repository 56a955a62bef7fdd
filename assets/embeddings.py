"""Embedding assets, one per registered backbone: `embeddings_<backbone>`, and `tags_<backbone>` for the
backbones that also predict tags (MusiCNN).

Each writes `storage/embeddings/<backbone>/<catalog batch>.parquet` through the runner, which embeds only
the batches whose inputs or code changed. The asset's data version is the hash of the stored tables'
fingerprints, so downstream models are stale only when the embeddings really changed.
"""

import hashlib
from dataclasses import dataclass

import dagster as dg
import polars as pl

from catalog.io import read_metadata
from embedders.base import create_embedder
from embedders.runner import CODE_VERSION as RUNNER_VERSION
from embedders.runner import embed_catalog, embedding_files, read_backbone
from embedders.tags import TagView, is_tagger, tags_by_label, top_tags
from assets.automation import RERUN_WHEN_STALE
from assets.placement import GPU_BACKBONES, placement
from pipelines.resources import CatalogResource, StorageResource


def catalog_root(catalog: CatalogResource, storage: StorageResource):
    """The folder `tracks.audio_path` is relative to."""
    return storage.path("catalog", "demo") if catalog.source == "demo" else catalog.folder


@dataclass(frozen=True)
class BackboneInfo:
    """What the asset definitions need to know of a backbone: name, version and, for a tagger, its tag names."""

    name: str
    version: str
    tag_names: tuple[str, ...] = ()


def backbone_info(backbone: str) -> BackboneInfo:
    """Construct the backbone once (MusiCNN loads its weights: about 1.6 s here) and keep what the embedding,
    tags and summary assets of one set of definitions need."""
    embedder = create_embedder(backbone)
    return BackboneInfo(backbone, embedder.version, tuple(TagView(embedder).tag_names) if is_tagger(embedder) else ())


def build_embedding_asset(info: BackboneInfo) -> dg.AssetsDefinition:
    backbone, embedder_version = info.name, info.version
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


def build_tags_asset(info: BackboneInfo) -> dg.AssetsDefinition:
    """`tags_<backbone>` for a tagging backbone (`info.tag_names` not empty)."""
    backbone = info.name

    @dg.asset(
        name=f"tags_{backbone}",
        group_name="embeddings",
        code_version=f"{info.version}.{RUNNER_VERSION}",
        description=f"The {len(info.tag_names)} tag probabilities of `{backbone}` per track (storage/tags/{backbone}/, "
                    f"one table per catalog batch) and, as this table, each track's 5 most probable tags.",
        **placement(True),
        kinds={"pytorch"},
        automation_condition=RERUN_WHEN_STALE,
    )
    def tags(context: dg.AssetExecutionContext, tracks: pl.DataFrame, catalog: CatalogResource,
             storage: StorageResource) -> pl.DataFrame:
        out_dir = storage.path("tags", backbone)
        tagger = TagView(create_embedder(backbone))
        result = embed_catalog(tagger, tracks, catalog_root(catalog, storage), out_dir, progress=context.log.info)
        context.add_output_metadata({"embedded_batches": result.embedded, "skipped_batches": result.skipped,
                                     "failed_tracks": result.failures, "path": str(out_dir)})
        return top_tags(read_backbone(out_dir), tagger.tag_names)

    return tags


def build_tags_summary_asset(taggers: list[BackboneInfo]) -> dg.AssetsDefinition:
    """`tags_summary`: what each tagging backbone hears, per label; the report's "tags" section."""

    @dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE,
              deps=[f"tags_{t.name}" for t in taggers])
    def tags_summary(tracks: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        """Per tagging backbone and label (a track's first catalog tag: the demo's instrumentation), the 3 tags
        of highest mean probability over the label's tracks: backbone, label, tracks, top_tags,
        top_probabilities. Tracks without catalog tags are left out."""
        labels = {row["track_id"]: row["tags"][0] for row in tracks.select("track_id", "tags").iter_rows(named=True)
                  if row["tags"]}
        blocks = []
        for tagger in taggers:
            blocks.append(tags_by_label(read_backbone(storage.path("tags", tagger.name)), tagger.tag_names, labels)
                          .with_columns(pl.lit(tagger.name).alias("backbone")))
        return pl.concat(blocks).select("backbone", "label", "tracks", "top_tags", "top_probabilities")

    return tags_summary
