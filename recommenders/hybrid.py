"""Hybrid linear autoencoder (ELSA with content): the item factors are an MLP of the audio embedding.

A = row-normalise(MLP(audio)) of shape (n_items, dim); a user's binary history x (n_items,) is reconstructed
as x A Aᵀ − x (the −x removes each item's own unit self-similarity, ELSA's zero-diagonal trick); training
minimises ‖normalise(x A Aᵀ − x) − normalise(x)‖² per user. Scores are x A Aᵀ (history is filtered), so a new
track is scored as soon as its audio vector is known (`add_items`): cold start works by construction.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.contrastive import Tower
from recommenders.ranking import ItemScorer
from recommenders.training import (
    FitReport, LoopSettings, Validation, align_items, load_checkpoint, pick_device, save_checkpoint,
    seed_everything, train_loop, user_sequences, validation_metric,
)


class HybridNet(nn.Module):
    """`audio` (n_items, d_audio) buffer and the tower producing the item factors."""

    def __init__(self, audio: torch.Tensor, hidden: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("audio", audio)
        self.tower = Tower(audio.shape[1], hidden, dim)

    def factors(self) -> torch.Tensor:
        """A: unit rows, shape (n_items, dim)."""
        return nn.functional.normalize(self.tower(self.audio), dim=-1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, n_items) binary → x A Aᵀ − x (b, n_items)."""
        a = self.factors()
        return (x @ a) @ a.T - x


def multi_hot(rows: Sequence[Sequence[int]], n_items: int, device: torch.device) -> torch.Tensor:
    """(len(rows), n_items) float tensor with ones at each user's item rows."""
    x = torch.zeros(len(rows), n_items, device=device)
    for b, seen in enumerate(rows):
        x[b, list(seen)] = 1.0
    return x


@register_recommender("hybrid")
class Hybrid(ItemScorer):
    """ELSA-style hybrid; early stopping on validation NDCG@`eval_k`."""

    name = "hybrid"
    fits_played_items_only = True  # vectors reach fit through align_items

    def __init__(self, dim: int = 128, hidden: int = 256, lr: float = 1e-3, batch_size: int = 128,
                 max_epochs: int = 100, patience: int = 5, eval_k: int = 50, seed: int = 0,
                 device: str | None = None) -> None:
        self.dim, self.hidden, self.lr, self.batch_size = dim, hidden, lr, batch_size
        self.max_epochs, self.patience, self.eval_k, self.seed = max_epochs, patience, eval_k, seed
        self.device = pick_device(device)
        self.item_ids: list[str] = []
        self.net: HybridNet | None = None
        self.report = FitReport()

    def _config(self) -> dict:
        keys = ("dim", "hidden", "lr", "batch_size", "max_epochs", "patience", "eval_k", "seed")
        return {key: getattr(self, key) for key in keys}

    def fit(self, train: pl.DataFrame, items: ItemVectors | None,
            validation: Validation | None = None) -> "Hybrid":
        seed_everything(self.seed)
        train, vectors = align_items(train, items, self.name)
        self.item_ids = vectors.ids
        audio = torch.from_numpy(vectors.matrix).float()
        self.net = HybridNet(audio, self.hidden, self.dim)
        self.net.tower.set_statistics(audio)
        self.net.to(self.device)
        _, sequences = user_sequences(train, self.item_ids)
        n_items = len(self.item_ids)

        def batches(epoch: int) -> Iterator[torch.Tensor]:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(sequences))
            for start in range(0, len(order), self.batch_size):
                yield multi_hot([sequences[i] for i in order[start:start + self.batch_size]], n_items, self.device)

        def step(x: torch.Tensor) -> tuple[torch.Tensor, int]:
            predicted = nn.functional.normalize(self.net.reconstruct(x), dim=-1)
            target = nn.functional.normalize(x, dim=-1)
            return ((predicted - target) ** 2).sum(-1).mean(), len(x)

        evaluate = None if validation is None else (
            lambda: validation_metric(self.recommend, validation, self.eval_k))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.report = train_loop(self.name, self.net, optimizer, batches, step, evaluate,
                                 LoopSettings(self.max_epochs, self.patience, "users"))
        return self

    def add_items(self, items: ItemVectors) -> None:
        """Make new tracks rankable from their audio (cold start); ids already known are left unchanged."""
        self.append_item_vectors(self._require_net(), "audio", items)

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        net = self._require_net()
        a = net.factors()
        return (multi_hot(rows, len(self.item_ids), self.device) @ a) @ a.T

    def save(self, folder: str | Path) -> Path:
        config = {"recommender": self.name, **self._config(), "item_ids": self.item_ids}
        return save_checkpoint(folder, config, self._require_net().state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Hybrid":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls(**{k: v for k, v in config.items() if k not in ("recommender", "item_ids")})
        model.item_ids = config["item_ids"]
        model.net = HybridNet(tensors["audio"], model.hidden, model.dim)
        model.net.load_state_dict(tensors)
        model.net.to(model.device).eval()
        return model
