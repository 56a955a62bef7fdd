"""Cold-start evaluation runner: per-user metrics of several recommenders on the scenarios of a `ColdSplit`.

A user's training history is the query; the candidates are the new tracks (`pool`):
- "new" (default): every new track, semi-cold and cold together, the shelf of new releases a service ranks;
  each scenario is judged on its own relevant pairs within that one ranking.
- "scenario": only that scenario's new tracks (`ColdSplit.candidates`), semi-cold among semi-cold, cold among
  cold. On the demo catalog this pool holds 48 semi-cold tracks, so Recall@20 saturates (≈ .95 for every
  system) and cannot tell systems apart; it is kept for comparison with protocols that rank per scenario.
Every model must already know the candidates (fit on an item table holding them, or `add_items`). A ranking
is judged against the user's relevant pairs of the scenario ("all") and against its discovery and exploit
pairs alone.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import polars as pl

from catalog.histories import Histories, Rankings, histories_from
from evaluation.cold_splits import NOVELTIES, SCENARIOS, ColdSplit, relevant_by
from evaluation.metrics import per_user_metrics
from evaluation.stats import compare_systems, summarize


class Ranker(Protocol):
    """What evaluation needs of a recommender (`recommenders.base.Recommender` is one)."""

    def recommend(self, histories: Histories, k: int, candidates: Sequence[str] | None = None) -> Rankings: ...

COLD_METRICS: tuple[str, ...] = ("hit_rate", "recall", "ndcg")


def evaluate_cold(
    models: Mapping[str, Ranker],
    split: ColdSplit,
    k_list: Sequence[int] = (20, 50),
    part: str = "test",
    metrics: Sequence[str] = COLD_METRICS,
    pool: Literal["new", "scenario"] = "new",
) -> pl.DataFrame:
    """Per-user metrics of every model on `split.test` (or `split.validation` with `part="validation"`),
    ranking the candidates of `pool` (module docstring).

    Columns: recommender str, scenario str ("semi_cold" | "cold"), novelty str ("all" | "discovery" |
    "exploit"), user_id str, metric str, k int32, value float64 (definitions: evaluation.metrics). A scenario
    or novelty without relevant pairs gives no rows. Users a model returns nothing for score 0.
    """
    if part not in ("test", "validation"):
        raise ValueError(f"part must be 'test' or 'validation', got {part!r}")
    if pool not in ("new", "scenario"):
        raise ValueError(f"pool must be 'new' or 'scenario', got {pool!r}")
    judged = split.test if part == "test" else split.validation
    histories = histories_from(split.train)
    blocks = []
    for scenario in SCENARIOS:
        candidates = sorted(split.scenario) if pool == "new" else split.candidates(scenario)
        relevant = {"all": relevant_by(judged, scenario)}
        relevant.update({novelty: relevant_by(judged, scenario, novelty) for novelty in NOVELTIES})
        if not relevant["all"]:
            continue
        queries = {user: histories[user] for user in sorted(relevant["all"])}
        for name, model in models.items():
            rankings = model.recommend(queries, max(k_list), candidates=candidates)
            for novelty, rel in relevant.items():
                if not rel:
                    continue
                blocks.append(per_user_metrics(rankings, rel, k_list, metrics).with_columns(
                    pl.lit(name).alias("recommender"), pl.lit(scenario).alias("scenario"),
                    pl.lit(novelty).alias("novelty")))
    if not blocks:
        raise ValueError(f"evaluate_cold: the {part} part has no relevant pair")
    columns = ["recommender", "scenario", "novelty", "user_id", "metric", "k", "value"]
    return pl.concat(blocks).select(columns)


def cold_start_summary(per_user: pl.DataFrame, reference: str, k: int, dataset: str) -> pl.DataFrame:
    """Mean [95% CI] per (scenario, novelty, backbone, recommender, metric) at cutoff `k` of per-user cold
    metrics (`evaluate_cold` columns plus `backbone`): the `metrics` contract columns plus `novelty`, with the
    paired Wilcoxon p-value of each system against `reference` on the same users and pairs (`p_vs_reference`,
    null for the reference itself)."""
    scored = per_user.filter(pl.col("k") == k)
    rows = []
    for (scenario, novelty, backbone), group in scored.group_by(["scenario", "novelty", "backbone"],
                                                                maintain_order=True):
        baseline = group.filter(pl.col("recommender") == reference).select("user_id", "metric", "k", "value")
        for (recommender,), system in group.group_by(["recommender"], maintain_order=True):
            values = system.select("user_id", "metric", "k", "value")
            summary = summarize(values, scenario=scenario, backbone=backbone, recommender=recommender,
                                experiment="cold_start", dataset=dataset).with_columns(pl.lit(novelty).alias("novelty"))
            if recommender == reference or baseline.is_empty():
                summary = summary.with_columns(pl.lit(None, pl.Float64).alias("p_vs_reference"))
            else:
                p = compare_systems(values, baseline).select("metric", "k", pl.col("p_value").alias("p_vs_reference"))
                summary = summary.join(p, on=["metric", "k"], how="left")
            rows.append(summary)
    return pl.concat(rows)
