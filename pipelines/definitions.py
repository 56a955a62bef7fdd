"""The Dagster code location: every asset, resource and job of musicrec.

`dagster job execute -m pipelines.definitions -j demo` runs the whole demo in process (another executor:
pipelines/executors.py).
"""
from __future__ import annotations

import dagster as dg

from assets.artist_similarity import build_demo_artist_similarity_asset, olga_layer_sweep
from assets.catalog import catalog_tables
from assets.cold_start import build_cold_start_asset, cold_start_table
from assets.checks import (artist_edges_are_valid, artists_are_valid, build_embedding_check, hot_split_is_valid,
                           interactions_are_valid, metrics_are_valid, queries_are_valid, tracks_are_valid)
from assets.embeddings import backbone_info, build_embedding_asset, build_tags_asset, build_tags_summary_asset
from assets.experiment import DEMO, Experiment, experiment_from_env
from assets.hot_start import build_evaluation_asset, build_model_asset, hot_split_tables
from assets.text_search import search_index, text_retrieval_results
from assets.reports import build_per_user_metrics_asset, build_report_asset, metrics, significance
from pipelines.executors import executor_from_env
from pipelines.io_manager import ParquetIOManager
from pipelines.resources import CatalogResource, StorageResource, default_storage_root
from pipelines.sensors import new_catalog_batches, nightly_reembed


def all_assets(experiment: Experiment) -> list:
    """Every asset of `experiment`: the hot matrix always, the other studies when it runs them."""
    systems = experiment.hot_systems()
    backbones = [backbone_info(b) for b in experiment.backbones]  # each backbone constructed once
    taggers = [info for info in backbones if info.tag_names]
    sections = tuple(s for s in ("cold_start", "artist_similarity") if experiment.runs(s))
    sections += ("tags",) if taggers else ()
    assets = [
        catalog_tables,
        *[build_embedding_asset(info) for info in backbones],
        *[build_tags_asset(info) for info in taggers],
        *([build_tags_summary_asset(taggers)] if taggers else []),
        hot_split_tables,
        *[build_model_asset(r, b, experiment.options.get(r)) for r, b in systems],
        *[build_evaluation_asset(r, b) for r, b in systems],
        build_per_user_metrics_asset(systems), metrics, significance,
        build_report_asset(sections),
    ]
    if experiment.runs("text_search"):
        assets += [search_index, text_retrieval_results]
    if experiment.runs("artist_similarity"):
        assets += [build_demo_artist_similarity_asset(experiment.backbones), olga_layer_sweep]
    if experiment.runs("cold_start"):
        assets += [build_cold_start_asset(experiment.backbones), cold_start_table]
    return assets


def build_definitions(
    storage_root: str | None = None, catalog: CatalogResource | None = None, experiment: Experiment = DEMO
) -> dg.Definitions:
    """Definitions over a storage root (default: $MUSICREC_STORAGE or storage/), a catalog and an experiment
    matrix (default: the demo's backbones x recommenders and every study)."""
    root = storage_root or default_storage_root()
    executor = executor_from_env()
    jobs = [dg.define_asset_job(
        "embed", selection=dg.AssetSelection.groups("catalog", "embeddings"), executor_def=executor,
        description="Catalog tables and every backbone's embeddings (only new or changed batches are embedded).")]
    heavy: list[str] = []  # assets with a job of their own, left out of the demo job
    if experiment.runs("text_search"):
        heavy.append("text_retrieval_results")
        jobs.append(dg.define_asset_job(
            "text_retrieval", selection=dg.AssetSelection.assets("text_retrieval_results"),
            executor_def=executor,
            description="The text-retrieval experiment (fine-tunes the bi-encoder per seed; minutes on a GPU)."))
    if experiment.runs("artist_similarity"):
        heavy.append("olga_layer_sweep")
        jobs.append(dg.define_asset_job(
            "olga", selection=dg.AssetSelection.assets("olga_layer_sweep"), executor_def=executor,
            description="The GraphSAGE layer sweep on the real OLGA artist graph (../shared/data/olga)."))
    jobs.append(dg.define_asset_job(
        "demo", selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*heavy),
        executor_def=executor,
        description="Everything from the catalog to the report (and the search index), in one process."))
    automation = dg.AutomationConditionSensorDefinition(
        "musicrec_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING)
    return dg.Definitions(
        assets=all_assets(experiment),
        asset_checks=[tracks_are_valid, artists_are_valid, interactions_are_valid, artist_edges_are_valid,
                      queries_are_valid, hot_split_is_valid, metrics_are_valid,
                      *[build_embedding_check(b) for b in experiment.backbones]],
        jobs=jobs,
        sensors=[new_catalog_batches, automation],
        schedules=[nightly_reembed],
        resources={
            "storage": StorageResource(root=root),
            "catalog": catalog or CatalogResource(),
            "io_manager": ParquetIOManager(base_dir=f"{root}/tables"),
        },
    )


defs = build_definitions(experiment=experiment_from_env())
