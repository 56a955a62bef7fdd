"""EASE (Steck 2019): the closed-form linear item-item autoencoder with L2 penalty and a zero diagonal, and
the low-rank CF item factors that the content models (contrastive, hybrid) align audio with.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.ranking import ItemScorer
from recommenders.training import Validation, load_checkpoint, most_played_items, pick_device, save_checkpoint

log = logging.getLogger("musicrec.ease")


def interaction_matrix(train: pl.DataFrame, item_ids: Sequence[str]) -> tuple[list[str], sp.csr_matrix]:
    """Binary users × items matrix (float32 CSR) over `item_ids`; users sorted; plays of other items dropped."""
    users = sorted(train["user_id"].unique().to_list())
    columns = pl.DataFrame({"track_id": list(item_ids), "col": np.arange(len(item_ids))},
                           schema={"track_id": pl.String, "col": pl.Int64})
    rows = pl.DataFrame({"user_id": users, "row": np.arange(len(users))}, schema={"user_id": pl.String, "row": pl.Int64})
    pairs = train.select("user_id", "track_id").join(columns, on="track_id").join(rows, on="user_id")
    matrix = sp.csr_matrix(
        (np.ones(pairs.height, np.float32), (pairs["row"].to_numpy(), pairs["col"].to_numpy())),
        shape=(len(users), len(item_ids)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return users, matrix


def cf_item_factors(train: pl.DataFrame, dim: int, seed: int = 0, singular_power: float = 1.0) -> ItemVectors:
    """Rank-`dim` CF item factors of the training plays (shape (n_items, dim), items sorted by id).

    With X = U S Vᵀ the truncated SVD of the binary users × items matrix, the factors are
    A = V (S / s₁)^`singular_power`: the optimal rank-`dim` linear autoencoder x ↦ x V Vᵀ spans the same space
    (PureSVD / ELSA without the diagonal constraint). With power 1, A Aᵀ ∝ the rank-`dim` approximation of
    the co-play matrix XᵀX (scaled to ≤ 1), whose leading, popularity-driven components dominate dot products;
    power 1/2 is the symmetric split of S between users and items (A Aᵀ ∝ V S Vᵀ), which weighs the finer
    components (an artist's listeners) more. Columns beyond the matrix rank are zero.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    item_ids = sorted(train["track_id"].unique().to_list())
    _, matrix = interaction_matrix(train, item_ids)
    rank = min(dim, min(matrix.shape) - 1)
    if matrix.shape[0] * matrix.shape[1] <= 4_000_000 or rank < 1:
        _, s, vt = np.linalg.svd(matrix.toarray().astype(np.float64), full_matrices=False)
        s, vt = s[:dim], vt[:dim]
    else:
        v0 = np.random.default_rng(seed).standard_normal(min(matrix.shape))
        _, s, vt = svds(matrix.astype(np.float64), k=rank, v0=v0)
        order = np.argsort(-s)
        s, vt = s[order], vt[order]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])  # fix each vector's sign
    factors = (vt * signs[:, None]).T * (s / max(s[0], 1e-12)) ** singular_power
    padded = np.zeros((len(item_ids), dim), np.float32)
    padded[:, : factors.shape[1]] = factors
    return ItemVectors(item_ids, padded)


@register_recommender("ease")
class Ease(ItemScorer):
    """EASE: B = argmin ‖X − XB‖² + λ‖B‖² s.t. diag(B) = 0, in closed form B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹.

    The dense item × item matrix costs 4·n² bytes (float32; 2.2 GB for 23k items), so `max_items` keeps only
    the most played items (the others are never recommended). Pure CF: `uses_content = False`.
    """

    name = "ease"
    uses_content = False

    def __init__(self, l2: float = 200.0, max_items: int | None = 10_000, device: str | None = None) -> None:
        if l2 <= 0:
            raise ValueError(f"ease: l2 must be positive, got {l2}")
        self.l2, self.max_items, self.device = float(l2), max_items, pick_device(device)
        self.item_ids: list[str] = []
        self.weights = torch.zeros(0, 0)

    def fit(self, train: pl.DataFrame, items: ItemVectors | None = None,
            validation: Validation | None = None) -> "Ease":
        if train.is_empty():
            raise ValueError("ease: empty training table")
        self.item_ids = most_played_items(train, self.max_items)
        _, matrix = interaction_matrix(train, self.item_ids)
        x = torch.from_numpy(matrix.toarray()).to(self.device, torch.float64)
        gram = x.T @ x + self.l2 * torch.eye(len(self.item_ids), dtype=torch.float64, device=self.device)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # gram is symmetric positive definite
        weights = -precision / torch.diagonal(precision)[None, :]
        weights.fill_diagonal_(0.0)
        self.weights = weights.float()
        log.info("ease: %d items, l2 %.1f", len(self.item_ids), self.l2)
        return self

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        x = torch.zeros(len(users), len(self.item_ids), device=self.weights.device)
        for b, seen in enumerate(rows):
            x[b, list(seen)] = 1.0
        return x @ self.weights

    def save(self, folder: str | Path) -> Path:
        config = {"recommender": self.name, "l2": self.l2, "max_items": self.max_items, "item_ids": self.item_ids}
        return save_checkpoint(folder, config, {"weights": self.weights})

    @classmethod
    def load(cls, folder: str | Path) -> "Ease":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls(l2=config["l2"], max_items=config["max_items"])
        model.item_ids, model.weights = config["item_ids"], tensors["weights"].to(model.device)
        return model
