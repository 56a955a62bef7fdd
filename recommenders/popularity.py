"""Most-popular baseline: every user gets the tracks played by the most training users."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import torch

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.ranking import ItemScorer
from recommenders.training import Validation, load_checkpoint, save_checkpoint


@register_recommender
class Popularity(ItemScorer):
    """Score of a track = number of distinct training users who played it; ignores content and validation."""

    name = "popularity"
    uses_content = False

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.item_ids: list[str] = []
        self.counts = torch.zeros(0)

    def fit(self, train: pl.DataFrame, items: ItemVectors | None = None,
            validation: Validation | None = None) -> "Popularity":
        if train.is_empty():
            raise ValueError("popularity: empty training table")
        counts = train.group_by("track_id").agg(pl.col("user_id").n_unique().alias("users")).sort("track_id")
        self.item_ids = counts["track_id"].to_list()
        self.counts = torch.tensor(counts["users"].to_numpy(), dtype=torch.float32)
        return self

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        return self.counts.expand(len(users), -1)

    def save(self, folder: str | Path) -> Path:
        return save_checkpoint(folder, self.checkpoint_config(item_ids=self.item_ids), {"counts": self.counts})

    @classmethod
    def load(cls, folder: str | Path) -> "Popularity":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids, model.counts = config["item_ids"], tensors["counts"]
        return model
