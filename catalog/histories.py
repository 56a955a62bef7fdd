"""Listening histories from the `interactions` contract: the query every recommender ranks for."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

Histories = Mapping[str, Sequence[str]]  # user_id -> track ids, oldest first
Rankings = dict[str, list[str]]  # user_id -> top-k track ids, best first
ScoredRankings = dict[str, list[tuple[str, float]]]  # user_id -> top-k (track id, score), best first


def histories_from(interactions: pl.DataFrame) -> dict[str, list[str]]:
    """user_id -> track ids ordered by timestamp (ties by track_id), from an interactions table."""
    ordered = interactions.sort(["user_id", "timestamp", "track_id"])
    grouped = ordered.group_by("user_id", maintain_order=True).agg(pl.col("track_id"))
    return dict(zip(grouped["user_id"].to_list(), grouped["track_id"].to_list()))
