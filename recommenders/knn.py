"""Item-KNN over audio embeddings: a user is the mean of their history's item vectors; items are ranked by
cosine similarity to it (faiss inner product on normalised vectors); history is filtered out.

`standardize=True` z-scores every dimension over the catalog first, so that no dimension with a large scale
dominates the cosine (off reproduces the published recommender exactly).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors.numpy import load_file, save_file

from catalog.histories import Histories, ScoredRankings
from catalog.io import ItemVectors, atomic_path, write_json
from recommenders.base import Recommender, register_recommender
from recommenders.index import VectorIndex


@register_recommender
class ItemKNN(Recommender):
    name = "knn"
    ranks_new_tracks = True  # every track with a vector is in the index

    @dataclass(frozen=True)
    class Options:
        standardize: bool = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.items: ItemVectors | None = None

    def fit(self, train: pl.DataFrame, items: ItemVectors | None, validation=None) -> "ItemKNN":
        """KNN has no parameters to learn; it keeps the item table (z-scored when `standardize`)."""
        if items is None:
            raise ValueError("knn needs item vectors (an embedding table)")
        matrix = items.matrix.astype(np.float32)
        if self.options.standardize:
            matrix = (matrix - matrix.mean(axis=0)) / (matrix.std(axis=0) + 1e-6)
        self.items = ItemVectors(items.ids, matrix)
        return self

    def user_vectors(self, histories: Histories) -> tuple[list[str], np.ndarray]:
        """(users with at least one known item, their mean item vectors (n, dim))."""
        position = self.items.index_of()
        users, rows = [], []
        for user, history in histories.items():
            known = [position[i] for i in history if i in position]
            if known:
                users.append(user)
                rows.append(self.items.matrix[known].mean(axis=0))
        return users, np.asarray(rows, dtype=np.float32).reshape(len(rows), self.items.dim)

    def recommend_scored(self, histories: Histories, k: int,
                         candidates: Sequence[str] | None = None) -> ScoredRankings:
        if self.items is None:
            raise RuntimeError("knn: call fit before recommend")
        pool = self.items if candidates is None else self.items.subset(list(candidates))
        users, queries = self.user_vectors(histories)
        if not users:
            return {}
        index = VectorIndex(pool.ids, pool.matrix, normalize=True)
        ranked, scores = index.search(queries, k, exclude=[histories[u] for u in users])
        return {user: list(zip(ids, row[: len(ids)].tolist())) for user, ids, row in zip(users, ranked, scores)}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(self.checkpoint_config(item_ids=self.items.ids), folder / "config.json")
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({"items": self.items.matrix}, str(tmp))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ItemKNN":
        import json

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        model = cls.from_config(config)
        model.items = ItemVectors(config["item_ids"], load_file(str(folder / "model.safetensors"))["items"])
        return model
