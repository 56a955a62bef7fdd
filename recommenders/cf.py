"""Collaborative-filtering utilities shared by the recommenders: the binary play matrix, the most played
items, and the low-rank CF item factors that the content models (contrastive, hybrid, acarec) align audio
with and BERT4Rec can start its item table from."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from catalog.io import ItemVectors


def most_played_items(train: pl.DataFrame, max_items: int | None) -> list[str]:
    """Training items, most-played first (ties by id), cut to `max_items` (None: all); returned sorted by id."""
    counts = train.group_by("track_id").agg(pl.len().alias("n")).sort(["n", "track_id"], descending=[True, False])
    return sorted(counts["track_id"].to_list()[: max_items or None])


def interaction_matrix(train: pl.DataFrame, item_ids: Sequence[str]) -> tuple[list[str], sp.csr_matrix]:
    """Binary users × items matrix (float32 CSR) over `item_ids`; users sorted; plays of other items dropped."""
    users = sorted(train["user_id"].unique().to_list())
    columns = pl.DataFrame({"track_id": list(item_ids), "col": np.arange(len(item_ids))},
                           schema={"track_id": pl.String, "col": pl.Int64})
    rows = pl.DataFrame({"user_id": users, "row": np.arange(len(users))},
                        schema={"user_id": pl.String, "row": pl.Int64})
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
