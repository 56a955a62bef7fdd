"""The shallow audio recommender: frozen item vectors, trainable user vectors, one shared Linear+ReLU, cosine
scores, trained with a hinge loss against sampled negatives (the published model, user sampling fixed).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.training import (
    LoopSettings,
    TrainedScorer,
    TrainingOptions,
    Validation,
    align_items,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train_loop,
    user_sequences,
    validation_metric,
)


class ShallowNet(nn.Module):
    """Scores cos(f(u), f(v)) with f = ReLU(Linear(dim → out_dim)) shared by users and items.

    `items`: frozen (n_items, dim) buffer; `users`: trainable (n_users, dim) parameter.
    """

    def __init__(self, items: torch.Tensor, users: torch.Tensor, out_dim: int) -> None:
        super().__init__()
        self.register_buffer("items", items)
        self.users = nn.Parameter(users)
        self.head = nn.Sequential(nn.Linear(items.shape[1], out_dim), nn.ReLU())

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        """(b, dim) → unit-norm (b, out_dim)."""
        return nn.functional.normalize(self.head(vectors), dim=-1)

    def hinge_loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                   margin: float) -> torch.Tensor:
        """Mean of max(0, margin − s(u, p) + s(u, n)); users, positives (b,), negatives (b, n_neg) rows."""
        u = self.embed(self.users[users])
        pos = (u * self.embed(self.items[positives])).sum(-1)
        neg = torch.einsum("bd,bnd->bn", u, self.embed(self.items[negatives]))
        return torch.relu(margin - pos[:, None] + neg).mean()


@register_recommender
class Shallow(TrainedScorer):
    """Shallow model over a backbone's frozen item vectors; early stopping on validation NDCG@`eval_k`."""

    name = "shallow"
    ranks_new_tracks = True  # add_items: the shared head maps a new track's vector like any item's
    fits_played_items_only = True  # vectors reach fit through align_items

    @dataclass(frozen=True)
    class Options(TrainingOptions):
        out_dim: int | None = None
        margin: float = 0.2
        negatives: int = 20
        batch_size: int = 512
        max_epochs: int = 50
        patience: int = 3

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.user_ids: list[str] = []

    def fit(self, train: pl.DataFrame, items: ItemVectors | None,
            validation: Validation | None = None) -> "Shallow":
        seed_everything(self.options.seed)
        train, vectors = align_items(train, items, self.name)
        self.item_ids = vectors.ids
        self.user_ids, sequences = user_sequences(train, self.item_ids)
        item_matrix = torch.from_numpy(vectors.matrix).float()
        users_init = torch.stack([item_matrix[rows].mean(0) for rows in sequences])
        self.net = ShallowNet(item_matrix, users_init, self.options.out_dim or vectors.dim).to(self.device)
        user_col = np.concatenate([np.full(len(rows), u) for u, rows in enumerate(sequences)])
        item_col = np.concatenate([np.asarray(rows) for rows in sequences])
        n_items = len(self.item_ids)

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
            rng = np.random.default_rng([self.options.seed, epoch])
            order = rng.permutation(len(user_col))
            for start in range(0, len(order), self.options.batch_size):
                chosen = order[start:start + self.options.batch_size]
                negatives = rng.integers(0, n_items, size=(len(chosen), self.options.negatives))
                yield tuple(torch.from_numpy(a).to(self.device)
                            for a in (user_col[chosen], item_col[chosen], negatives))

        def step(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
            return self.net.hinge_loss(*batch, margin=self.options.margin), len(batch[0])

        evaluate = None if validation is None else (
            lambda: validation_metric(self.recommend, validation, self.options.eval_k))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.options.lr)
        self.report = train_loop(self.name, self.net, optimizer, batches, step, evaluate,
                                 LoopSettings(self.options.max_epochs, self.options.patience, "rows"))
        return self

    def add_items(self, items: ItemVectors) -> None:
        """Make new tracks rankable from their audio vectors (cold start: the shared head maps them like any
        item); ids already known are left unchanged."""
        self.append_item_vectors(self._require_net(), "items", items)

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        self._require_net()
        known = {u: i for i, u in enumerate(self.user_ids)}
        dim = self.net.items.shape[1]
        vectors = torch.stack([
            self.net.users[known[u]] if u in known
            else (self.net.items[list(r)].mean(0) if r else torch.zeros(dim, device=self.device))
            for u, r in zip(users, rows)
        ])
        return self.net.embed(vectors) @ self.net.embed(self.net.items).T

    def save(self, folder: str | Path) -> Path:
        config = self.checkpoint_config(item_ids=self.item_ids, user_ids=self.user_ids)
        return save_checkpoint(folder, config, self.net.state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Shallow":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids, model.user_ids = config["item_ids"], config["user_ids"]
        items, users = tensors["items"], tensors["users"]
        model.net = ShallowNet(items, users, tensors["head.0.weight"].shape[0])
        model.net.load_state_dict(tensors)
        model.net.to(model.device).eval()
        return model
