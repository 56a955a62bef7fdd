"""Cold-start evaluation runner: per-user metrics of several recommenders on the scenarios of a `ColdSplit`.

In each scenario a user's training history is the query and the candidates are that scenario's new tracks
(`ColdSplit.candidates`): semi-cold tracks are ranked among semi-cold tracks, cold among cold. Every model
must already know those candidates (fit on an item table holding them, or `add_items`). The ranking of a user
is computed once per scenario and judged against the user's relevant pairs of that scenario ("all") and
against the discovery and exploit pairs alone.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

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
) -> pl.DataFrame:
    """Per-user metrics of every model on `split.test` (or `split.validation` with `part="validation"`).

    Columns: recommender str, scenario str ("semi_cold" | "cold"), novelty str ("all" | "discovery" |
    "exploit"), user_id str, metric str, k int32, value float64 (definitions: evaluation.metrics). A scenario
    or novelty without relevant pairs gives no rows. Users a model returns nothing for score 0.
    """
    if part not in ("test", "validation"):
        raise ValueError(f"part must be 'test' or 'validation', got {part!r}")
    judged = split.test if part == "test" else split.validation
    histories = histories_from(split.train)
    blocks = []
    for scenario in SCENARIOS:
        candidates = split.candidates(scenario)
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
