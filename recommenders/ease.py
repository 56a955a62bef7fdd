"""EASE (Steck 2019): the closed-form linear item-item autoencoder with L2 penalty and a zero diagonal."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.cf import interaction_matrix, most_played_items
from recommenders.layers import multi_hot
from recommenders.ranking import ItemScorer
from recommenders.training import Validation, load_checkpoint, pick_device, save_checkpoint

log = logging.getLogger("musicrec.ease")


@register_recommender
class Ease(ItemScorer):
    """EASE: B = argmin ‖X − XB‖² + λ‖B‖² s.t. diag(B) = 0, in closed form B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹.

    The dense item × item matrix costs 4·n² bytes (float32; 2.2 GB for 23k items), so `max_items` keeps only
    the most played items (the others are never recommended). Pure CF: `uses_content = False`.
    """

    name = "ease"
    uses_content = False
    needs_gpu = True  # the item x item inverse is a dense matmul workload

    @dataclass(frozen=True)
    class Options:
        l2: float = 200.0
        max_items: int | None = 10_000
        device: str | None = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options.l2 <= 0:
            raise ValueError(f"ease: l2 must be positive, got {self.options.l2}")
        self.device = pick_device(self.options.device)
        self.item_ids: list[str] = []
        self.weights = torch.zeros(0, 0)

    def fit(self, train: pl.DataFrame, items: ItemVectors | None = None,
            validation: Validation | None = None) -> "Ease":
        if train.is_empty():
            raise ValueError("ease: empty training table")
        self.item_ids = most_played_items(train, self.options.max_items)
        _, matrix = interaction_matrix(train, self.item_ids)
        x = torch.from_numpy(matrix.toarray()).to(self.device, torch.float64)
        gram = x.T @ x + self.options.l2 * torch.eye(len(self.item_ids), dtype=torch.float64, device=self.device)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # gram is symmetric positive definite
        weights = -precision / torch.diagonal(precision)[None, :]
        weights.fill_diagonal_(0.0)
        self.weights = weights.float()
        log.info("ease: %d items, l2 %.1f", len(self.item_ids), self.options.l2)
        return self

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        return multi_hot(rows, len(self.item_ids), self.weights.device) @ self.weights

    def save(self, folder: str | Path) -> Path:
        return save_checkpoint(folder, self.checkpoint_config(item_ids=self.item_ids), {"weights": self.weights})

    @classmethod
    def load(cls, folder: str | Path) -> "Ease":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids, model.weights = config["item_ids"], tensors["weights"].to(model.device)
        return model
