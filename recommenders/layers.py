"""Network pieces shared by the neural recommenders: the standardising MLP tower, multi-hot play vectors,
users' histories as bags of item rows (`Bags`, for `embedding_bag` and sparse sums), users' CF profiles, and
ELSA's loss (dense or from bags)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class Bags:
    """Users' item rows in the layout of `nn.functional.embedding_bag`: `items` (nnz,) long, user b's rows
    are items[offsets[b]:offsets[b] + counts[b]]; `offsets`, `counts` (n_users,) long."""

    items: torch.Tensor
    offsets: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def from_csr(cls, indptr: np.ndarray, indices: np.ndarray, users: np.ndarray | None = None,
                 device: torch.device | str = "cpu") -> "Bags":
        """The bags of rows `users` (all when None) of a CSR matrix (`indptr` (n_rows + 1,), `indices` (nnz,)),
        gathered without a Python loop over users."""
        users = np.arange(len(indptr) - 1) if users is None else np.asarray(users)
        starts, counts = indptr[users], indptr[users + 1] - indptr[users]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        positions = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
        return cls(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)
                     for a in (indices[positions], offsets, counts)))

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]], limit: int, device: torch.device | str = "cpu",
                  unique: bool = False) -> "Bags":
        """Each user's rows below `limit` (others dropped), in order, or sorted without repeats (`unique`)."""
        lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
        flat = np.fromiter((r for seen in rows for r in seen), np.int64, int(lengths.sum()))
        owner = np.repeat(np.arange(len(rows)), lengths)
        keep = (flat < limit) & (flat >= 0)
        flat, owner = flat[keep], owner[keep]
        if unique:
            keys = np.unique(owner * max(limit, 1) + flat)
            flat, owner = keys % max(limit, 1), keys // max(limit, 1)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(rows)))])
        return cls.from_csr(indptr, flat, device=device)

    def sums(self, table: torch.Tensor) -> torch.Tensor:
        """Σ of `table`'s rows (n, dim) in each bag: (n_users, dim) (differentiable in `table`)."""
        return nn.functional.embedding_bag(self.items, table, self.offsets, mode="sum")


def mean_profiles(table: torch.Tensor, rows: Sequence[Sequence[int]], n_known: int,
                  fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Each user's profile, (len(rows), dim): the mean of `table`'s rows (n_known, dim) of the user's known
    items (rows < `n_known`, repeats counted); a user without a known item gets `fallback` (dim,) (default: the
    mean of the whole table). One `embedding_bag` over all users (no per-user tensor operation)."""
    bags = Bags.from_rows(rows, n_known, table.device)
    means = bags.sums(table) / bags.counts.clamp_min(1)[:, None].to(table.dtype)
    return torch.where((bags.counts > 0)[:, None], means, table.mean(0) if fallback is None else fallback)


def elsa_loss(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """ELSA's training loss (Vančura et al. 2022): mean over the batch of ‖normalise(x A Aᵀ − x) −
    normalise(x)‖², with x (b, n_items) binary histories and A (n_items, dim) unit-row item factors; the −x
    removes each item's own unit self-similarity (the zero-diagonal constraint of EASE, factorised)."""
    predicted = nn.functional.normalize((x @ factors) @ factors.T - x, dim=-1)
    return ((predicted - nn.functional.normalize(x, dim=-1)) ** 2).sum(-1).mean()


def elsa_loss_bags(bags: Bags, factors: torch.Tensor) -> torch.Tensor:
    """`elsa_loss` of binary histories given as bags without repeats (`Bags.from_rows(..., unique=True)`), in
    O(nnz·dim + n_items·dim²) and without a (b, n_items) matrix. With z = x A (b, dim), G = Aᵀ A (dim, dim)
    and p = x A Aᵀ − x: ‖p‖² = z G zᵀ − 2‖z‖² + ‖x‖², p·x = ‖z‖² − ‖x‖², ‖x‖² = the history length, and the
    loss per user is 2 − 2 p·x / (‖p‖ ‖x‖) (equal to `elsa_loss` up to rounding while p ≠ 0)."""
    z = bags.sums(factors)
    zz = (z * z).sum(-1)
    xx = bags.counts.to(z.dtype)
    pp = (((z @ (factors.T @ factors)) * z).sum(-1) - 2 * zz + xx).clamp_min(1e-12)
    cosine = (zz - xx) / (pp.sqrt() * xx.sqrt().clamp_min(1e-12))
    return (2 - 2 * cosine).mean()
