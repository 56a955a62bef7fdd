"""Hybrid linear autoencoder (ELSA with content): the item factors are an MLP of the audio embedding.

A = row-normalise(MLP(audio)) of shape (n_items, dim); training minimises ELSA's loss
(`layers.elsa_loss`) over users' binary histories, as `recommenders.elsa` does with a free factor table.
Scores are x A Aᵀ (history is filtered), so a new track is scored as soon as its audio vector is known
(`add_items`): cold start works by construction.

Training cost: a step runs the tower once over every item (the loss needs Aᵀ A over all of them) and reads
each user's history as a bag of item rows (`layers.elsa_loss_bags`): no (users × items) matrix is built, in
training or in scoring.
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
from recommenders.cf import interaction_matrix
from recommenders.layers import Bags, Tower, elsa_loss_bags
from recommenders.training import (
    LoopSettings,
    TrainedScorer,
    TrainingOptions,
    Validation,
    adam,
    align_items,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train_loop,
    validation_metric,
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


@register_recommender
class Hybrid(TrainedScorer):
    """ELSA-style hybrid; early stopping on validation NDCG@`eval_k`."""

    name = "hybrid"
    version = "2"  # sparse ELSA loss (same objective), fused Adam
    ranks_new_tracks = True  # item factors are an MLP of the audio vector
    fits_played_items_only = True  # vectors reach fit through align_items

    @dataclass(frozen=True)
    class Options(TrainingOptions):
        dim: int = 128
        hidden: int = 256
        batch_size: int = 128

    def fit(self, train: pl.DataFrame, items: ItemVectors | None,
            validation: Validation | None = None) -> "Hybrid":
        seed_everything(self.options.seed)
        train, vectors = align_items(train, items, self.name)
        self.item_ids = vectors.ids
        audio = torch.from_numpy(vectors.matrix).float()
        self.net = HybridNet(audio, self.options.hidden, self.options.dim)
        self.net.tower.set_statistics(audio)
        self.net.to(self.device)
        _, plays = interaction_matrix(train, self.item_ids)  # binary users × items CSR

        def batches(epoch: int) -> Iterator[Bags]:
            order = np.random.default_rng([self.options.seed, epoch]).permutation(plays.shape[0])
            for start in range(0, len(order), self.options.batch_size):
                yield Bags.from_csr(plays.indptr, plays.indices, order[start:start + self.options.batch_size],
                                    self.device)

        def step(x: Bags) -> tuple[torch.Tensor, int]:
            return elsa_loss_bags(x, self.net.factors()), len(x.counts)

        evaluate = None if validation is None else (
            lambda: validation_metric(self.recommend, validation, self.options.eval_k))
        optimizer = adam(self.net.parameters(), self.options.lr)
        self.report = train_loop(self.name, self.net, optimizer, batches, step, evaluate,
                                 LoopSettings(self.options.max_epochs, self.options.patience, "users"))
        return self

    def add_items(self, items: ItemVectors) -> None:
        """Make new tracks rankable from their audio (cold start); ids already known are left unchanged."""
        self.append_item_vectors(self._require_net(), "audio", items)

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        net = self._require_net()
        a = net.factors()
        return Bags.from_rows(rows, len(self.item_ids), self.device, unique=True).sums(a) @ a.T

    def save(self, folder: str | Path) -> Path:
        config = self.checkpoint_config(item_ids=self.item_ids)
        return save_checkpoint(folder, config, self._require_net().state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Hybrid":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids = config["item_ids"]
        model.net = HybridNet(tensors["audio"], model.options.hidden, model.options.dim)
        model.net.load_state_dict(tensors)
        model.net.to(model.device).eval()
        return model
