"""Embedding assets, one per backbone table of the experiment: `embeddings_<table>`, and `tags_<table>` for
the backbones that also predict tags (MusiCNN). Building them loads no model: a backbone is constructed (and
its weights read) only when its step runs, so a missing weight fails that step alone.

Each writes `storage/embeddings/<table>/<catalog batch>.parquet` through the runner, which embeds only
the batches whose inputs or code changed. The asset's data version is the hash of the stored tables'
fingerprints, so downstream models are stale only when the embeddings really changed.
"""

import hashlib
import re

import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.catalog import audio_root
from assets.experiment import Experiment
from assets.placement import op_placement, placement
from assets.resources import STEP_IO, StorageResource
from assets.retries import retried_when_transient
from catalog.io import read_metadata
from catalog.registry import code_version
from embedders.base import Embedder
from embedders.runner import CODE_VERSION as RUNNER_VERSION
from embedders.runner import (
    LongTracks,
    embed_batch,
    embed_catalog,
    embedding_files,
    read_backbone,
    remove_gone_batches,
    stale_batches,
)
from embedders.tags import TagView, tags_by_label, top_tags

# the backbone last constructed: (run id, table) -> it. A run's plan step and each of its batch steps then share
# one construction (one weight load) when they run in one process; a new run constructs afresh, so a changed
# weight or vector file is always read again.
_last_backbone: dict[tuple[str, str], Embedder] = {}


def create_backbone(experiment: Experiment, table: str, storage: StorageResource,
                    run_id: str) -> tuple[Embedder, object]:
    """The backbone of `table` (constructed, which loads its weights, once per run and process) and the
    folder its audio is read from. Fails the step with a message naming the experiment key when the weights
    or the audio are missing."""
    cls = experiment.backbone_class(table)
    root = audio_root(experiment.catalog, storage)
    if cls.needs_audio and root is None:
        raise dg.Failure(f"backbones.{table}: backbone {cls.name} reads audio, but the catalog has none "
                         f"(set the catalog's `audio` folder)")
    key = (run_id, table)
    if key not in _last_backbone:
        try:
            backbone = cls(**experiment.backbone_options(table))
        except (FileNotFoundError, ValueError) as error:
            raise dg.Failure(f"backbones.{table}: {error}") from error
        _last_backbone.clear()  # one slot: a model's memory is not held past its table's steps
        _last_backbone[key] = backbone
    return _last_backbone[key], root


def mapping_key(batch: str) -> str:
    """A Dagster mapping key (letters, digits, _) naming catalog batch `batch`, distinct for distinct batches."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", batch)
    return clean if clean == batch else f"{clean}_{hashlib.sha256(batch.encode()).hexdigest()[:8]}"


def build_embedding_asset(experiment: Experiment, table: str) -> dg.AssetsDefinition:
    """`embeddings_<table>`: the vectors of backbone table `table` (experiment file key `backbones.<table>`).

    A graph of three kinds of step, so that an executor can give each catalog batch a worker of its own
    (`multiprocess`: a process each; `k8s`: a pod each, GPU steps requesting a GPU):
    `plan_<table>` lists the batches whose table is missing or out of date (one dynamic output each),
    `embed_<table>[<batch>]` embeds one batch (in the `gpu` pool when the backbone needs a GPU; a tagging
    backbone's tag tables come from the same forward, so `tags_<table>` finds them up to date), and
    `collect_<table>` removes tables of batches gone from the catalog and reports the asset's data version."""
    cls = experiment.backbone_class(table)
    long = LongTracks(max_chunks=experiment.backbones[table].long_track_chunks)

    @dg.op(name=f"plan_{table}", out=dg.DynamicOut(str, io_manager_key=STEP_IO))
    @retried_when_transient
    def plan(context: dg.OpExecutionContext, tracks: pl.DataFrame, storage: StorageResource):
        """One output per catalog batch to embed; warns about vectors of ids the catalog lacks."""
        embedder, _ = create_backbone(experiment, table, storage, context.run_id)
        stale = stale_batches(embedder, tracks, storage.path("embeddings", table), long=long)
        context.log.info(f"{table}: {len(stale)} of {tracks['batch'].n_unique()} catalog batches to embed")
        for batch in stale:
            yield dg.DynamicOutput(batch, mapping_key=mapping_key(batch))

    @dg.op(name=f"embed_{table}", out=dg.Out(tuple, io_manager_key=STEP_IO),
           **op_placement(cls.needs_gpu and experiment.uses_gpu_pool()))
    @retried_when_transient
    def embed(context: dg.OpExecutionContext, batch: str, tracks: pl.DataFrame,
              storage: StorageResource) -> tuple[str, int]:
        """Embed one catalog batch; returns (the batch, its number of failed tracks)."""
        embedder, root = create_backbone(experiment, table, storage, context.run_id)
        return batch, embed_batch(embedder, tracks, batch, root or ".", storage.path("embeddings", table),
                                  progress=context.log.info, long=long,
                                  tags_dir=storage.path("tags", table) if cls.tag_names else None)

    @dg.op(name=f"collect_{table}", out=dg.Out(dg.Nothing))
    @retried_when_transient
    def collect(context: dg.OpExecutionContext, embedded: list[tuple[str, int]], tracks: pl.DataFrame,
                storage: StorageResource):
        """Remove the tables of batches gone from the catalog; the data version hashes the stored tables'
        fingerprints, so downstream models are stale only when the embeddings really changed."""
        out_dir = storage.path("embeddings", table)
        removed = remove_gone_batches(tracks, out_dir)
        fingerprints = [read_metadata(f)["fingerprint"] for f in embedding_files(out_dir)]
        version = hashlib.sha256("".join(fingerprints).encode()).hexdigest()[:16]
        done = sorted(batch for batch, _ in embedded)
        metadata = {"embedded_batches": done,
                    "skipped_batches": sorted(set(tracks["batch"].unique().to_list()) - set(done)),
                    "removed_batches": removed, "failed_tracks": sum(failed for _, failed in embedded),
                    "path": str(out_dir)}
        if callable(getattr(cls, "unknown_ids", None)):  # a backbone of given vectors: ids beyond the catalog
            embedder, _ = create_backbone(experiment, table, storage, context.run_id)
            outside = embedder.unknown_ids(tracks["track_id"].to_list())
            if outside:
                context.log.warning(f"backbones.{table}: {len(outside)} vector(s) of ids not in the catalog, "
                                    f"first {outside[:5]}")
            metadata["vectors_not_in_catalog"] = len(outside)
        yield dg.Output(None, data_version=dg.DataVersion(version), metadata=metadata)

    @dg.graph_asset(
        name=f"embeddings_{table}",
        group_name="embeddings",
        code_version=f"{code_version(cls, experiment.backbone_options(table))}.{RUNNER_VERSION}"
                     f".{experiment.backbones[table].long_track_chunks}",
        description=f"Track embeddings of table `{table}` (backbone `{cls.name}`), one Parquet file per catalog "
                    f"batch in embeddings/{table}/, each batch a step of its own.",
        kinds={"pytorch"} if cls.needs_gpu else {"python"},
        automation_condition=RERUN_WHEN_STALE,
    )
    def embeddings(tracks: pl.DataFrame):
        return collect(plan(tracks).map(lambda batch: embed(batch, tracks)).collect(), tracks)

    return embeddings


def build_tags_asset(experiment: Experiment, table: str) -> dg.AssetsDefinition:
    """`tags_<table>` for a tagging backbone (its class declares `tag_names`). It runs after `embeddings_<table>`,
    whose batch steps write the tag tables from the same forward: it embeds only batches still missing."""
    cls = experiment.backbone_class(table)

    @dg.asset(
        name=f"tags_{table}",
        group_name="embeddings",
        deps=[f"embeddings_{table}"],
        code_version=f"{code_version(cls, experiment.backbone_options(table))}.{RUNNER_VERSION}"
                     f".{experiment.backbones[table].long_track_chunks}",
        description=f"The {len(cls.tag_names)} tag probabilities of `{table}` per track (tags/{table}/, one table "
                    f"per catalog batch) and, as this table, each track's 5 most probable tags.",
        **placement(cls.needs_gpu and experiment.uses_gpu_pool()),
        kinds={"pytorch"},
        automation_condition=RERUN_WHEN_STALE,
    )
    @retried_when_transient
    def tags(context: dg.AssetExecutionContext, tracks: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        out_dir = storage.path("tags", table)
        embedder, root = create_backbone(experiment, table, storage, context.run_id)
        tagger = TagView(embedder)
        long = LongTracks(max_chunks=experiment.backbones[table].long_track_chunks)
        result = embed_catalog(tagger, tracks, root, out_dir, progress=context.log.info, long=long)
        context.add_output_metadata({"embedded_batches": result.embedded, "skipped_batches": result.skipped,
                                     "failed_tracks": result.failures, "path": str(out_dir)})
        return top_tags(read_backbone(out_dir), tagger.tag_names)

    return tags


def build_tags_summary_asset(experiment: Experiment, taggers: list[str]) -> dg.AssetsDefinition:
    """`tags_summary`: what each tagging backbone hears, per label; the report's "tags" section."""

    @dg.asset(group_name="reports", code_version="1", automation_condition=RERUN_WHEN_STALE,
              deps=[f"tags_{t}" for t in taggers])
    @retried_when_transient
    def tags_summary(tracks: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        """Per tagging backbone and label (a track's first catalog tag: the demo's instrumentation), the 3 tags
        of highest mean probability over the label's tracks: backbone, label, tracks, top_tags,
        top_probabilities. Tracks without catalog tags are left out."""
        labels = {row["track_id"]: row["tags"][0] for row in tracks.select("track_id", "tags").iter_rows(named=True)
                  if row["tags"]}
        blocks = []
        for tagger in taggers:
            tag_names = experiment.backbone_class(tagger).tag_names
            blocks.append(tags_by_label(read_backbone(storage.path("tags", tagger)), tag_names, labels)
                          .with_columns(pl.lit(tagger).alias("backbone")))
        return pl.concat(blocks).select("backbone", "label", "tracks", "top_tags", "top_probabilities")

    return tags_summary
