"""Cold-start assets: the cold split (semi-cold tracks of known artists, cold tracks of new artists), the
cold-start systems (every recommender of the experiment that ranks new tracks, and the reference, ACARec by
default) per content backbone table, and their comparison table."""
import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.experiment import Experiment
from assets.placement import placement
from assets.resources import StorageResource
from assets.retries import retried_when_transient
from catalog.registry import code_version
from embedders.runner import read_backbone
from evaluation.cold_eval import cold_start_summary
from evaluation.cold_splits import cold_split
from recommenders.cold_start import run_cold_experiment

COLD_CODE_VERSION = "5"


def build_cold_start_asset(experiment: Experiment) -> dg.AssetsDefinition:
    systems = {name: (experiment.recommender_class(name), experiment.recommender_options(name))
               for name in experiment.cold_systems()}
    settings = experiment.cold_start
    versions = ",".join(f"{name}={code_version(cls, options)}" for name, (cls, options) in systems.items())
    tables = experiment.content_tables()  # random vectors rank new tracks at random
    split_arguments = experiment.split.arguments()

    @dg.asset(group_name="cold_start", automation_condition=RERUN_WHEN_STALE,
              code_version=f"{COLD_CODE_VERSION}:{versions}:{settings.model_dump_json()}:{sorted(split_arguments.items())}",
              deps=[f"embeddings_{t}" for t in tables],
              **placement(experiment.uses_gpu_pool() and any(cls.needs_gpu for cls, _ in systems.values())))
    @retried_when_transient
    def cold_start_per_user(interactions: pl.DataFrame, tracks: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        """Per-user Recall/NDCG/HitRate@k of the cold-start systems per backbone table, on semi-cold and cold
        test tracks (ranked among all new tracks), for all relevant pairs and for discovery / exploit pairs;
        each user's metrics averaged over fits with the experiment's cold-start seeds."""
        split = cold_split(interactions, tracks, holdout_artists=settings.holdout_artists, **split_arguments)
        ks = sorted({settings.k, *experiment.metrics.ks})
        blocks = [run_cold_experiment(split, interactions, tracks, read_backbone(storage.path("embeddings", t)),
                                      systems, ks, seeds=settings.seeds)
                  .with_columns(pl.lit(t).alias("backbone")) for t in tables]
        return pl.concat(blocks)

    return cold_start_per_user


def build_cold_start_table_asset(experiment: Experiment) -> dg.AssetsDefinition:
    reference, k = experiment.cold_start.reference, experiment.cold_start.k

    @dg.asset(group_name="cold_start", code_version=f"3:{reference}:{k}", automation_condition=RERUN_WHEN_STALE)
    @retried_when_transient
    def cold_start_table(cold_start_per_user: pl.DataFrame) -> pl.DataFrame:
        """Mean [95% CI] per (scenario, novelty, backbone, recommender, metric) at the cold-start cutoff, with
        the paired Wilcoxon p-value of each system against the reference (`evaluation.cold_eval`)."""
        return cold_start_summary(cold_start_per_user, reference, k, experiment.name)

    return cold_start_table
