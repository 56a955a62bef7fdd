"""Network pieces shared by the neural recommenders: the standardising MLP tower, multi-hot play vectors,
and users' CF profiles."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Tower(nn.Module):
    """Standardise the input with fixed statistics, then Linear → ReLU → Linear: (b, in_dim) → (b, out_dim)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def set_statistics(self, inputs: torch.Tensor) -> None:
        """Fix the standardisation to the column means and standard deviations of `inputs` (n, in_dim)."""
        self.mean.copy_(inputs.mean(0))
        self.std.copy_(inputs.std(0).clamp_min(1e-6))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers((inputs - self.mean) / self.std)


def multi_hot(rows: Sequence[Sequence[int]], n_items: int, device: torch.device) -> torch.Tensor:
    """(len(rows), n_items) float tensor with ones at each user's item rows."""
    x = torch.zeros(len(rows), n_items, device=device)
    for b, seen in enumerate(rows):
        x[b, list(seen)] = 1.0
    return x


def mean_profiles(table: torch.Tensor, rows: Sequence[Sequence[int]], n_known: int) -> torch.Tensor:
    """Each user's profile, (len(rows), dim): the mean of `table`'s rows (n_known, dim) of the user's known
    items (rows < `n_known`); a user without a known item gets the mean of the whole table."""
    return torch.stack([
        table[[r for r in seen if r < n_known]].mean(0) if any(r < n_known for r in seen) else table.mean(0)
        for seen in rows
    ])


def elsa_loss(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """ELSA's training loss (Vančura et al. 2022): mean over the batch of ‖normalise(x A Aᵀ − x) −
    normalise(x)‖², with x (b, n_items) binary histories and A (n_items, dim) unit-row item factors; the −x
    removes each item's own unit self-similarity (the zero-diagonal constraint of EASE, factorised)."""
    predicted = nn.functional.normalize((x @ factors) @ factors.T - x, dim=-1)
    return ((predicted - nn.functional.normalize(x, dim=-1)) ** 2).sum(-1).mean()
