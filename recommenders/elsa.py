"""ELSA (Vančura, Alves, Kasalický, Kordík, RecSys 2022): the scalable linear shallow autoencoder, a factorised
EASE and the journal's pure-CF baseline.

A free item-factor table W (n_items, dim) is row-normalised into A; a user's binary history x is reconstructed
as x A Aᵀ − x and trained with `layers.elsa_loss` (Adam, mini-batches of users, early stopping on validation
NDCG@`eval_k`). Memory is O(n_items · dim), not EASE's dense n_items², so it covers every training track of a
journal-size catalog (55k tracks × 256 dims = 56 MB of float32 factors). Pure CF: `uses_content = False`;
tracks without training plays are never recommended.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.layers import elsa_loss, multi_hot
from recommenders.training import (
    LoopSettings,
    TrainedScorer,
    TrainingOptions,
    Validation,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train_loop,
    user_sequences,
    validation_metric,
)


class ElsaNet(nn.Module):
    """The free item-factor table W (n_items, dim); `factors()` is A, its rows normalised to unit length."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_items, dim)))

    def factors(self) -> torch.Tensor:
        return nn.functional.normalize(self.weight, dim=-1)


@register_recommender
class Elsa(TrainedScorer):
    """ELSA over every track played in training; scores x A Aᵀ (the history is filtered by the ranking)."""

    name = "elsa"
    version = "1"
    uses_content = False

    @dataclass(frozen=True)
    class Options(TrainingOptions):
        dim: int = 256
        lr: float = 0.01
        max_epochs: int = 50
        patience: int = 3

    def fit(self, train: pl.DataFrame, items: ItemVectors | None = None,
            validation: Validation | None = None) -> "Elsa":
        if train.is_empty():
            raise ValueError("elsa: empty training table")
        seed_everything(self.options.seed)
        self.item_ids = sorted(train["track_id"].unique().to_list())
        _, sequences = user_sequences(train, self.item_ids)
        self.net = ElsaNet(len(self.item_ids), self.options.dim).to(self.device)
        n_items, size = len(self.item_ids), self.options.batch_size

        def batches(epoch: int) -> Iterator[torch.Tensor]:
            order = np.random.default_rng([self.options.seed, epoch]).permutation(len(sequences))
            for start in range(0, len(order), size):
                yield multi_hot([sequences[i] for i in order[start:start + size]], n_items, self.device)

        def step(x: torch.Tensor) -> tuple[torch.Tensor, int]:
            return elsa_loss(x, self.net.factors()), len(x)

        evaluate = None if validation is None else (
            lambda: validation_metric(self.recommend, validation, self.options.eval_k))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.options.lr)
        self.report = train_loop(self.name, self.net, optimizer, batches, step, evaluate,
                                 LoopSettings(self.options.max_epochs, self.options.patience, "users"))
        return self

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        a = self._require_net().factors()
        return (multi_hot(rows, len(self.item_ids), self.device) @ a) @ a.T

    def save(self, folder: str | Path) -> Path:
        return save_checkpoint(folder, self.checkpoint_config(item_ids=self.item_ids), self._require_net().state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Elsa":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids = config["item_ids"]
        model.net = ElsaNet(*tensors["weight"].shape)
        model.net.load_state_dict(tensors)
        model.net.to(model.device).eval()
        return model
