"""Asset checks on every table: row counts, duplicate ids, references, embedding dims, finite values and
id coverage. Blocking checks stop downstream work with a readable message."""
import dagster as dg
import numpy as np
import polars as pl

from embedders.runner import read_backbone, read_backbone_failures
from pipelines.resources import StorageResource

MIN_EMBEDDED_FRACTION = 0.95  # at least this share of catalog tracks must have a vector


def _fail(description: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=description, metadata=metadata)


@dg.asset_check(asset="tracks", blocking=True, description="tracks: at least one row, unique track ids")
def tracks_are_valid(tracks: pl.DataFrame) -> dg.AssetCheckResult:
    if tracks.is_empty():
        return _fail("the catalog has no tracks: check the catalog folder or the ingest failures table")
    duplicates = tracks.filter(pl.col("track_id").is_duplicated())["track_id"].unique().to_list()
    if duplicates:
        return _fail(f"{len(duplicates)} duplicate track ids, e.g. {duplicates[:3]}")
    return dg.AssetCheckResult(passed=True, metadata={"rows": tracks.height})


@dg.asset_check(asset="interactions", blocking=True, additional_ins={"tracks": dg.AssetIn("tracks")},
                description="interactions: unique (user, track), every track known")
def interactions_are_valid(interactions: pl.DataFrame, tracks: pl.DataFrame) -> dg.AssetCheckResult:
    unknown = interactions.join(tracks.select("track_id"), on="track_id", how="anti")
    if unknown.height:
        return _fail(f"{unknown.height} interactions point at unknown tracks, e.g. {unknown['track_id'][:3].to_list()}")
    if interactions.select(pl.struct("user_id", "track_id").is_duplicated().any()).item():
        return _fail("duplicate (user_id, track_id) rows: the contract keeps the first play per pair")
    return dg.AssetCheckResult(passed=True, metadata={"rows": interactions.height,
                                                      "users": interactions["user_id"].n_unique()})


def build_embedding_check(backbone: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=f"embeddings_{backbone}", name="embeddings_are_valid", blocking=True,
                    additional_ins={"tracks": dg.AssetIn("tracks")},
                    description="dims consistent, values finite, unique ids, ids known, coverage of the catalog")
    def check(tracks: pl.DataFrame, storage: StorageResource) -> dg.AssetCheckResult:
        folder = storage.path("embeddings", backbone)
        vectors = read_backbone(folder)
        if not np.isfinite(vectors.matrix).all():
            return _fail(f"{folder}: embeddings hold NaN or inf values")
        if len(set(vectors.ids)) != len(vectors.ids):
            return _fail(f"{folder}: duplicate track ids in the embedding tables")
        catalog_ids = set(tracks["track_id"].to_list())
        unknown = sorted(set(vectors.ids) - catalog_ids)
        if unknown:
            return _fail(f"{folder}: {len(unknown)} vectors for tracks not in the catalog, e.g. {unknown[:3]}")
        coverage = len(vectors.ids) / max(1, len(catalog_ids))
        failures = read_backbone_failures(folder)
        metadata = {"dim": vectors.dim, "vectors": len(vectors.ids), "coverage": coverage,
                    "failed_tracks": failures.height}
        if coverage < MIN_EMBEDDED_FRACTION:
            return _fail(f"only {coverage:.1%} of catalog tracks have a {backbone} vector "
                         f"(minimum {MIN_EMBEDDED_FRACTION:.0%}); see {folder}/*.failures.parquet", **metadata)
        return dg.AssetCheckResult(passed=True, metadata=metadata)

    return check
