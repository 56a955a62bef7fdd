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
from typing import Literal

import polars as pl

from evaluation.cold_splits import NOVELTIES, SCENARIOS, ColdSplit, relevant_by
from evaluation.metrics import per_user_metrics
from recommenders.base import Recommender, histories_from

COLD_METRICS: tuple[str, ...] = ("hit_rate", "recall", "ndcg")


def evaluate_cold(
    models: Mapping[str, Recommender],
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
