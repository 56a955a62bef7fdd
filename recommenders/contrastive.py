"""Contrastive audio–CF alignment: two 2-layer MLP towers map a track's audio vector and its CF factors into
one space, trained with the decoupled contrastive loss (DCL: the positive pair is left out of the
denominator), temperature 0.1.

Ranking: a user is the CF tower applied to their CF profile (the mean CF factors of their history); a track
is the audio tower applied to its audio vector; score = cosine. Hot and cold tracks are thus scored the same
way, from audio, so the model measures what the audio carries (its shuffled twin loses exactly that), and a
new track only needs `add_items` (or `embed_audio` to place audio vectors in the shared space).
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
from recommenders.cf import cf_item_factors
from recommenders.layers import Tower, mean_profiles
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


def decoupled_contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """DCL (Yeh et al. 2022) between unit vectors a, b of shape (n, d), row i of each a positive pair:
    mean over i and both directions of −s_ii/τ + log Σ_{j≠i} exp(s_ij/τ), s = a bᵀ."""
    sim = a @ b.T / temperature
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    positives = sim.diagonal()
    rows = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1)
    cols = torch.logsumexp(sim.T.masked_fill(eye, float("-inf")), dim=1)
    return (rows + cols).mean() / 2 - positives.mean()


class ContrastiveNet(nn.Module):
    """Audio and CF towers plus the item tables: `audio` (n_items, d_audio), `cf` (n_cf_items, d_cf)."""

    def __init__(self, audio: torch.Tensor, cf: torch.Tensor, hidden: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("audio", audio)
        self.register_buffer("cf", cf)
        self.audio_tower = Tower(audio.shape[1], hidden, dim)
        self.cf_tower = Tower(cf.shape[1], hidden, dim)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.audio_tower(audio), dim=-1)

    def embed_cf(self, cf: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.cf_tower(cf), dim=-1)


@register_recommender
class Contrastive(TrainedScorer):
    """Contrastive two-tower model; CF factors are rank-`cf_dim` linear-autoencoder factors of the training plays."""

    name = "contrastive"
    version = "2"  # fused Adam; validation on a bounded sample of users
    ranks_new_tracks = True  # the audio tower embeds new tracks
    fits_played_items_only = True  # vectors reach fit through align_items

    @dataclass(frozen=True)
    class Options(TrainingOptions):
        dim: int = 128
        hidden: int = 256
        cf_dim: int = 64
        temperature: float = 0.1

    def fit(self, train: pl.DataFrame, items: ItemVectors | None,
            validation: Validation | None = None) -> "Contrastive":
        seed_everything(self.options.seed)
        train, vectors = align_items(train, items, self.name)
        factors = cf_item_factors(train, self.options.cf_dim, self.options.seed)
        if factors.ids != vectors.ids:
            raise AssertionError("contrastive: CF factors and audio vectors cover different tracks")
        self.item_ids = vectors.ids
        audio = torch.from_numpy(vectors.matrix).float()
        cf = torch.from_numpy(factors.matrix).float()
        self.net = ContrastiveNet(audio, cf, self.options.hidden, self.options.dim)
        self.net.audio_tower.set_statistics(audio)
        self.net.cf_tower.set_statistics(cf)
        self.net.to(self.device)
        n_items = len(self.item_ids)

        def batches(epoch: int) -> Iterator[torch.Tensor]:
            order = np.random.default_rng([self.options.seed, epoch]).permutation(n_items)
            for start in range(0, n_items, self.options.batch_size):
                chosen = order[start:start + self.options.batch_size]
                if len(chosen) > 1:  # a lone item has no negatives
                    yield torch.from_numpy(chosen).to(self.device)

        def step(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
            a = self.net.embed_audio(self.net.audio[rows])
            c = self.net.embed_cf(self.net.cf[rows])
            return decoupled_contrastive_loss(a, c, self.options.temperature), len(rows)

        evaluate = None if validation is None else (
            lambda: validation_metric(self.recommend, validation, self.options.eval_k))
        optimizer = adam(self.net.parameters(), self.options.lr)
        self.report = train_loop(self.name, self.net, optimizer, batches, step, evaluate,
                                 LoopSettings(self.options.max_epochs, self.options.patience, "items"))
        return self

    @torch.no_grad()
    def embed_audio(self, audio: np.ndarray) -> np.ndarray:
        """Audio vectors (n, d_audio) of any tracks → unit vectors (n, dim) in the shared space."""
        net = self._require_net()
        return net.embed_audio(torch.as_tensor(audio, dtype=torch.float32, device=self.device)).cpu().numpy()

    def add_items(self, items: ItemVectors) -> None:
        """Make new tracks rankable from their audio (cold start); ids already known are left unchanged."""
        self.append_item_vectors(self._require_net(), "audio", items)

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        net = self._require_net()
        profiles = mean_profiles(net.cf, rows, net.cf.shape[0])  # the training tracks come first
        return net.embed_cf(profiles) @ net.embed_audio(net.audio).T

    def save(self, folder: str | Path) -> Path:
        net = self._require_net()
        config = self.checkpoint_config(item_ids=self.item_ids)
        return save_checkpoint(folder, config, net.state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Contrastive":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids = config["item_ids"]
        model.net = ContrastiveNet(tensors["audio"], tensors["cf"], model.options.hidden, model.options.dim)
        model.net.load_state_dict(tensors)
        model.net.to(model.device).eval()
        return model
