"""The Dagster code location: every asset, resource and job of musicrec.

`dagster job execute -m pipelines.definitions -j demo` runs the whole demo in process.
"""
from __future__ import annotations

import dagster as dg

from assets.artist_similarity import build_demo_artist_similarity_asset, olga_layer_sweep
from assets.catalog import catalog_tables
from assets.cold_start import build_cold_start_asset, cold_start_table
from assets.checks import build_embedding_check, interactions_are_valid, tracks_are_valid
from assets.embeddings import build_embedding_asset
from assets.experiment import DEMO, Experiment
from assets.hot_start import build_evaluation_asset, build_model_asset, hot_split_tables
from assets.text_search import search_index, text_retrieval_results
from assets.reports import build_per_user_metrics_asset, metrics, report, significance
from pipelines.io_manager import ParquetIOManager
from pipelines.resources import CatalogResource, StorageResource, default_storage_root
from pipelines.sensors import new_catalog_batches, nightly_reembed


def all_assets(experiment: Experiment) -> list:
    systems = experiment.hot_systems()
    return [
        catalog_tables,
        *[build_embedding_asset(b) for b in experiment.backbones],
        hot_split_tables,
        *[build_model_asset(r, b, experiment.options.get(r)) for r, b in systems],
        *[build_evaluation_asset(r, b) for r, b in systems],
        build_per_user_metrics_asset(systems), metrics, significance, report,
        search_index, text_retrieval_results,
        build_demo_artist_similarity_asset(experiment.backbones), olga_layer_sweep,
        build_cold_start_asset(experiment.backbones), cold_start_table,
    ]


def build_definitions(
    storage_root: str | None = None, catalog: CatalogResource | None = None, experiment: Experiment = DEMO
) -> dg.Definitions:
    """Definitions over a storage root (default: $MUSICREC_STORAGE or storage/), a catalog and an experiment
    matrix (default: the demo's backbones x recommenders)."""
    root = storage_root or default_storage_root()
    heavy = dg.AssetSelection.assets("text_retrieval_results", "olga_layer_sweep")
    demo_job = dg.define_asset_job(
        "demo", selection=dg.AssetSelection.all() - heavy, executor_def=dg.in_process_executor,
        description="Everything from the demo catalog to the report and the search index, in one process.")
    text_job = dg.define_asset_job(
        "text_retrieval", selection=dg.AssetSelection.assets("text_retrieval_results"), executor_def=dg.in_process_executor,
        description="The text-retrieval experiment (fine-tunes the bi-encoder per seed; minutes on a GPU).")
    embed_job = dg.define_asset_job(
        "embed", selection=dg.AssetSelection.groups("catalog", "embeddings"), executor_def=dg.in_process_executor,
        description="Catalog tables and every backbone's embeddings (only new or changed batches are embedded).")
    automation = dg.AutomationConditionSensorDefinition(
        "musicrec_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING)
    olga_job = dg.define_asset_job(
        "olga", selection=dg.AssetSelection.assets("olga_layer_sweep"), executor_def=dg.in_process_executor,
        description="The GraphSAGE layer sweep on the real OLGA artist graph (../shared/data/olga).")
    return dg.Definitions(
        assets=all_assets(experiment),
        asset_checks=[tracks_are_valid, interactions_are_valid,
                      *[build_embedding_check(b) for b in experiment.backbones]],
        jobs=[demo_job, embed_job, text_job, olga_job],
        sensors=[new_catalog_batches, automation],
        schedules=[nightly_reembed],
        resources={
            "storage": StorageResource(root=root),
            "catalog": catalog or CatalogResource(),
            "io_manager": ParquetIOManager(base_dir=f"{root}/tables"),
        },
    )


defs = build_definitions()
