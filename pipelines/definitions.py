"""The Dagster code location: every asset, check, job, sensor and schedule of one experiment.

`MUSICREC_EXPERIMENT` names the experiment file (default: experiments/demo.yaml), so `dagster dev -m
pipelines.definitions` (`make ui`) shows that experiment; `musicrec run EXPERIMENT.yaml` builds the same
definitions from its argument. Building them loads no model and reads no weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from assets.artist_similarity import build_demo_artist_similarity_asset, build_olga_asset
from assets.catalog import build_catalog_asset
from assets.checks import (
    artist_edges_are_valid,
    build_artists_check,
    build_embedding_check,
    hot_split_is_valid,
    interactions_are_valid,
    metrics_are_valid,
    queries_are_valid,
    tracks_are_valid,
)
from assets.cold_start import build_cold_start_asset, build_cold_start_table_asset
from assets.embeddings import build_embedding_asset, build_tags_asset, build_tags_summary_asset
from assets.experiment import DEFAULT_EXPERIMENT, Experiment, load_experiment
from assets.hot_start import build_evaluation_asset, build_hot_split_asset, build_model_asset
from assets.reports import build_metrics_assets, build_per_user_metrics_asset, build_report_asset
from assets.resources import STEP_IO, StorageResource
from assets.serving import build_serving_assets
from assets.text_search import build_text_retrieval_asset, search_index
from pipelines.executors import executor_named
from pipelines.io_manager import ParquetIOManager
from pipelines.sensors import build_new_batches_sensor, nightly_reembed

EXPERIMENT_VARIABLE = "MUSICREC_EXPERIMENT"
MAIN_JOB = "experiment"  # everything from the catalog to the report, but the heavy standalone studies


def all_assets(experiment: Experiment) -> list:
    """Every asset of `experiment`: the hot matrix always, the other studies when it runs them."""
    systems = experiment.hot_systems()
    taggers = [t for t in experiment.backbones if experiment.backbone_class(t).tag_names]
    sections = tuple(s for s in ("cold_start", "artist_similarity") if experiment.runs(s))
    sections += ("tags",) if taggers else ()
    assets = [
        build_catalog_asset(experiment),
        *[build_embedding_asset(experiment, t) for t in experiment.backbones],
        *[build_tags_asset(experiment, t) for t in taggers],
        *([build_tags_summary_asset(experiment, taggers)] if taggers else []),
        build_hot_split_asset(experiment),
        *[build_model_asset(experiment, r, b) for r, b in systems],
        *[build_evaluation_asset(experiment, r, b) for r, b in systems],
        build_per_user_metrics_asset(experiment), *build_metrics_assets(experiment),
        build_report_asset(experiment, sections),
    ]
    if experiment.runs("text_search"):
        assets += [search_index, build_text_retrieval_asset(experiment)]
    if experiment.runs("artist_similarity"):
        assets += [build_demo_artist_similarity_asset(tuple(experiment.backbones)), build_olga_asset(experiment)]
    if experiment.runs("cold_start"):
        assets += [build_cold_start_asset(experiment), build_cold_start_table_asset(experiment)]
    if systems:
        assets += build_serving_assets(experiment)
    return assets


def build_definitions(experiment: Experiment) -> dg.Definitions:
    """The definitions of one experiment: its assets and checks, the jobs `embed` (catalog + embeddings),
    `experiment` (everything but the standalone studies below) and, when the studies run, `text_retrieval`
    and `olga`; the new-batch sensor, the nightly re-embedding schedule and the automation sensor."""
    root = str(experiment.storage)
    executor = executor_named(experiment.executor)
    jobs = [dg.define_asset_job(
        "embed", selection=dg.AssetSelection.groups("catalog", "embeddings"), executor_def=executor,
        description="Catalog tables and every backbone's embeddings (only new or changed batches are embedded).")]
    heavy: list[str] = []  # assets with a job of their own, left out of the main job
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
        MAIN_JOB, selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*heavy),
        executor_def=executor,
        description=f"Experiment {experiment.name}: everything from the catalog to the report, in one run."))
    automation = dg.AutomationConditionSensorDefinition(
        "musicrec_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING)
    return dg.Definitions(
        assets=all_assets(experiment),
        asset_checks=[tracks_are_valid, build_artists_check(experiment), interactions_are_valid,
                      artist_edges_are_valid, queries_are_valid, hot_split_is_valid, metrics_are_valid,
                      *[build_embedding_check(t) for t in experiment.backbones]],
        jobs=jobs,
        sensors=[build_new_batches_sensor(experiment), automation],
        schedules=[nightly_reembed],
        resources={
            "storage": StorageResource(root=root),
            "io_manager": ParquetIOManager(base_dir=f"{root}/tables"),
            STEP_IO: dg.FilesystemIOManager(base_dir=f"{root}/steps"),
        },
    )


def job_of(path: str, name: str) -> dg.JobDefinition:
    """Job `name` of the experiment file at `path`: how worker processes of the multiprocess (or Kubernetes)
    executor rebuild a job of `musicrec run` (`dg.build_reconstructable_job`); `musicrec run` names the same
    file in MUSICREC_EXPERIMENT, so a worker's module-level `defs` are those definitions already."""
    same = Path(DEFS_FILE).resolve() == Path(path).resolve()
    return (defs if same else build_definitions(load_experiment(path))).resolve_job_def(name)


def experiment_file() -> str:
    """The experiment file named by MUSICREC_EXPERIMENT, else the demo's."""
    return os.environ.get(EXPERIMENT_VARIABLE) or str(DEFAULT_EXPERIMENT)


DEFS_FILE = experiment_file()  # the experiment `defs` below were built from, when this module was imported
defs = build_definitions(load_experiment(DEFS_FILE))
