"""One vector-index interface for serving top-k: exact inner product with faiss (`IndexFlatIP`).

Cosine similarity = inner product of L2-normalised vectors; `VectorIndex.build(..., normalize=True)` does
that. On a GPU machine with faiss-gpu installed (`make gpu`) the index moves to the GPU.
"""
from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). float32, same shape."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class VectorIndex:
    """Exact maximum-inner-product search over item vectors, with per-query exclusions (a user's history)."""

    def __init__(self, ids: Sequence[str], matrix: np.ndarray, normalize: bool = True) -> None:
        self.ids = list(ids)
        self.normalize = normalize
        vectors = l2_normalize(matrix) if normalize else np.ascontiguousarray(matrix, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        index.add(vectors)
        self.index = index
        self.position = {item: row for row, item in enumerate(self.ids)}

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-`k` ids and scores per query row, best first, skipping each query's `exclude` ids.
        queries: (n, dim) float32. Returns (ids per query, scores (n, <=k) with -inf padding)."""
        queries = l2_normalize(queries) if self.normalize else np.ascontiguousarray(queries, dtype=np.float32)
        widest = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        depth = min(len(self.ids), k + widest)
        scores, rows = self.index.search(queries, depth)
        results: list[list[str]] = []
        kept_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for q in range(len(queries)):
            skip = set(exclude[q]) if exclude is not None else set()
            picked = [(self.ids[r], s) for r, s in zip(rows[q], scores[q]) if r >= 0 and self.ids[r] not in skip][:k]
            results.append([item for item, _ in picked])
            kept_scores[q, : len(picked)] = [s for _, s in picked]
        return results, kept_scores
