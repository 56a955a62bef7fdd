"""Cold-start assets: the cold split (semi-cold tracks of known artists, cold tracks of new artists), ACARec
and the content-only baselines per backbone, and their comparison table."""
import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.placement import placement
from embedders.runner import read_backbone
from evaluation.cold_experiment import REFERENCE, run_cold_experiment
from evaluation.cold_splits import cold_split
from evaluation.stats import compare_systems, summarize
from pipelines.resources import StorageResource

HOLDOUT_ARTISTS = 0.2  # the demo releases every artist in its first batch: withhold some so "cold" exists
COLD_K = 20
COLD_SEEDS = (0, 1, 2)  # every system is fit once per seed; each user's metrics are averaged over the fits


def build_cold_start_asset(backbones: tuple[str, ...]) -> dg.AssetsDefinition:
    content = [b for b in backbones if b != "random"]

    @dg.asset(group_name="cold_start", code_version="4", automation_condition=RERUN_WHEN_STALE,
              deps=[f"embeddings_{b}" for b in content], **placement(gpu=True))
    def cold_start_per_user(interactions: pl.DataFrame, tracks: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        """Per-user Recall/NDCG/HitRate@20,50 of knn, shallow, contrastive, hybrid and acarec per backbone, on
        semi-cold and cold test tracks (ranked among all new tracks), for all relevant pairs and for discovery /
        exploit pairs; each user's metrics averaged over fits with the seeds COLD_SEEDS."""
        split = cold_split(interactions, tracks, seed=0, holdout_artists=HOLDOUT_ARTISTS)
        blocks = [run_cold_experiment(split, interactions, tracks, read_backbone(storage.path("embeddings", b)),
                                      seeds=COLD_SEEDS)
                  .with_columns(pl.lit(b).alias("backbone")) for b in content]
        return pl.concat(blocks)

    return cold_start_per_user


@dg.asset(group_name="cold_start", code_version="2", automation_condition=RERUN_WHEN_STALE)
def cold_start_table(cold_start_per_user: pl.DataFrame) -> pl.DataFrame:
    """Mean [95% CI] per (scenario, novelty, backbone, recommender, metric) at k=20, the `metrics` contract
    columns plus `novelty` ("all" relevant pairs, "discovery", "exploit"), with the paired Wilcoxon p-value of
    each system against acarec on the same users and pairs (`p_vs_acarec`, null for acarec itself)."""
    scored = cold_start_per_user.filter(pl.col("k") == COLD_K)
    rows = []
    for (scenario, novelty, backbone), group in scored.group_by(["scenario", "novelty", "backbone"],
                                                                maintain_order=True):
        reference = group.filter(pl.col("recommender") == REFERENCE).select("user_id", "metric", "k", "value")
        for (recommender,), system in group.group_by(["recommender"], maintain_order=True):
            per_user = system.select("user_id", "metric", "k", "value")
            summary = summarize(per_user, scenario=scenario, backbone=backbone, recommender=recommender,
                                experiment="cold_start", dataset="demo").with_columns(pl.lit(novelty).alias("novelty"))
            if recommender != REFERENCE:
                p = compare_systems(per_user, reference).select("metric", "k", pl.col("p_value").alias("p_vs_acarec"))
                summary = summary.join(p, on=["metric", "k"], how="left")
            else:
                summary = summary.with_columns(pl.lit(None, pl.Float64).alias("p_vs_acarec"))
            rows.append(summary)
    return pl.concat(rows)
