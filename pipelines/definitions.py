"""The Dagster code location: every asset, resource and job of musicrec.

`dagster job execute -m pipelines.definitions -j demo` runs the whole demo in process.
"""
from __future__ import annotations

import dagster as dg

from assets.catalog import catalog_tables
from assets.embeddings import build_embedding_asset
from assets.experiment import BACKBONES, HOT_RECOMMENDERS
from assets.hot_start import build_evaluation_asset, build_model_asset, hot_split_tables
from assets.reports import metrics, per_user_metrics_all, report, significance
from pipelines.io_manager import ParquetIOManager
from pipelines.resources import CatalogResource, StorageResource, default_storage_root


def all_assets() -> list:
    return [
        catalog_tables,
        *[build_embedding_asset(b) for b in BACKBONES],
        hot_split_tables,
        *[build_model_asset(r, b) for r in HOT_RECOMMENDERS for b in BACKBONES],
        *[build_evaluation_asset(r, b) for r in HOT_RECOMMENDERS for b in BACKBONES],
        per_user_metrics_all, metrics, significance, report,
    ]


def build_definitions(storage_root: str | None = None, catalog: CatalogResource | None = None) -> dg.Definitions:
    """Definitions over a storage root (default: $MUSICREC_STORAGE or storage/) and a catalog."""
    root = storage_root or default_storage_root()
    demo_job = dg.define_asset_job("demo", selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor,
                                   description="Everything, from the demo catalog to the report, in one process.")
    return dg.Definitions(
        assets=all_assets(),
        jobs=[demo_job],
        resources={
            "storage": StorageResource(root=root),
            "catalog": catalog or CatalogResource(),
            "io_manager": ParquetIOManager(base_dir=f"{root}/tables"),
        },
    )


defs = build_definitions()
