"""One vector-index interface for serving top-k: exact inner product over the vectors of a faiss `IndexFlatIP`.

Cosine similarity = inner product of L2-normalised vectors; `VectorIndex(..., normalize=True)` does that. On a
GPU machine with faiss-gpu installed (`make gpu`) the index moves to the GPU and faiss searches it. On the CPU
the scores are one BLAS product per batch of queries over faiss's own vector storage (no copy), each query's
excluded rows set to -inf BEFORE the top-k, so the selection is k deep instead of k + the longest exclusion list
that a faiss search followed by a filter needs.

Where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), the product is screened first: a bfloat16 copy
of the vectors gives approximate scores, a deeper top (`k + max(k, SCREEN_MARGIN)`) of them is re-scored exactly
in float32, and the exact top-k of those is returned when it is certified: its k-th score beats the deepest
screened score plus the worst-case bfloat16 error (`screen_error_bound`), so no item left out could beat it. A
query that is not certified is scored exactly over every item. The results are the float32 search's.
Benchmark: benchmarks/anchor_topk.py.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from operator import itemgetter

import faiss
import numpy as np
import torch

from catalog.io import l2_normalize

SCREEN_MARGIN = 64  # extra screened candidates beyond k (at least k more), re-scored exactly
_BF16_UNIT_ROUNDOFF = 2.0**-8
_FP32_UNIT_ROUNDOFF = 2.0**-24


def screen_error_bound(dim: int) -> float:
    """Largest |bfloat16 screened score - exact score| per unit of |q| * |v| for `dim`-dimensional vectors: the
    rounding of q and v to bfloat16 (2u + u^2), float32 accumulation over `dim` products, and the bfloat16
    rounding of the result (u), u = 2^-8; with a 1% margin."""
    u = _BF16_UNIT_ROUNDOFF
    products = 2 * u + u * u
    accumulation = dim * _FP32_UNIT_ROUNDOFF * (1 + products)
    return 1.01 * ((1 + products + accumulation) * (1 + u) - 1)


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (oneDNN's AVX512-BF16 / AMX kernels); False where this torch
    build cannot tell (the check is a private oneDNN operator)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())


class VectorIndex:
    """Exact maximum-inner-product search over item vectors, with per-query exclusions (a user's history)."""

    batch_queries: int = 256  # CPU path: queries scored per BLAS product, (batch, n_items) scores at a time

    def __init__(self, ids: Sequence[str], matrix: np.ndarray, normalize: bool = True) -> None:
        self.ids = list(ids)
        self.normalize = normalize
        vectors = l2_normalize(matrix) if normalize else np.ascontiguousarray(matrix, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        # (n, dim) float32 view of the CPU index's storage, for the CPU search path; None on the GPU
        self._vectors: torch.Tensor | None = torch.from_numpy(
            faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
        ) if index.ntotal else torch.zeros(0, vectors.shape[1])
        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
            self._vectors = None
        self.index = index
        # bfloat16 copy for screening (CPU path, native bfloat16 only) and the largest vector norm, for the bound
        self._screen: torch.Tensor | None = None
        if self._vectors is not None and len(self._vectors) and native_bfloat16():
            self._screen = self._vectors.to(torch.bfloat16)
            self._largest_norm = float(self._vectors.norm(dim=1).max())
        self.position = {item: row for row, item in enumerate(self.ids)}
        self._id_array = np.array(self.ids, dtype=object)  # row -> id, for mapping results out in one take

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-`k` ids and scores per query row, best first, skipping each query's `exclude` ids.
        queries: (n, dim) float32. Returns (ids per query, scores (n, <=k) with -inf padding)."""
        queries = l2_normalize(queries) if self.normalize else np.ascontiguousarray(queries, dtype=np.float32)
        excluded = self.rows_of(exclude) if exclude is not None else [np.zeros(0, np.int64)] * len(queries)
        if self._vectors is None:
            scores, rows = self._faiss_search(queries, k, excluded)
        else:
            scores, rows = self._blas_search(queries, k, excluded)
        kept = np.isfinite(scores)  # kept rows come first in both paths
        results = self._id_array[rows].tolist()
        for q in np.flatnonzero(~kept.all(axis=1)):  # fewer than k hits: drop the -inf tail
            results[q] = results[q][: int(kept[q].sum())]
        padded = np.full((len(queries), k), -np.inf, dtype=np.float32)
        padded[:, : scores.shape[1]] = np.where(kept, scores, -np.inf)
        return results, padded

    def rows_of(self, groups: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Each group of ids as int64 index rows, ids not in the index left out. One C-level pass over all ids
        (`itemgetter`) when every id is known, else a `dict.get` pass that drops the unknown ones."""
        lengths = np.fromiter(map(len, groups), np.int64, len(groups))
        flat_ids = list(chain.from_iterable(groups))
        try:
            found = itemgetter(*flat_ids)(self.position) if len(flat_ids) > 1 else \
                [self.position[item] for item in flat_ids]
            unknown = False
        except KeyError:
            found, unknown = list(map(self.position.get, flat_ids, repeat(-1))), True
        flat = np.array(found, np.int64).reshape(-1)
        split = np.split(flat, np.cumsum(lengths)[:-1]) if len(groups) else []
        return [rows[rows >= 0] for rows in split] if unknown else split

    def _blas_search(self, queries: np.ndarray, k: int, excluded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """CPU: scores (n, min(k, n_items)) float32, best first, excluded rows -inf; rows int64 alike."""
        depth = min(k, len(self.ids))
        candidates = depth + max(depth, SCREEN_MARGIN)  # screened rows re-scored exactly per query
        screened = self._screen is not None and candidates < len(self.ids)
        scores = np.empty((len(queries), depth), np.float32)
        rows = np.empty((len(queries), depth), np.int64)
        for start in range(0, len(queries), self.batch_queries):
            stop = min(start + self.batch_queries, len(queries))
            batch, batch_excluded = torch.from_numpy(queries[start:stop]), excluded[start:stop]
            found = (self._screened_top(batch, depth, candidates, batch_excluded) if screened
                     else self._exact_top(batch, depth, batch_excluded))
            scores[start:stop], rows[start:stop] = found[0].numpy(), found[1].numpy()
        return scores, rows

    @staticmethod
    def _mask(scores: torch.Tensor, excluded: list[np.ndarray]) -> torch.Tensor:
        """scores (n, n_items) with each query's excluded rows set to -inf, in place."""
        lengths = [len(e) for e in excluded]
        if sum(lengths):
            which = torch.from_numpy(np.repeat(np.arange(len(excluded)), lengths))
            scores[which, torch.from_numpy(np.concatenate(excluded))] = float("-inf")
        return scores

    def _exact_top(self, queries: torch.Tensor, depth: int, excluded: list[np.ndarray]):
        """Top `depth` (scores float32, rows int64), each (n, depth), of float32 queries (n, dim) over every item."""
        top = torch.topk(self._mask(queries @ self._vectors.T, excluded), depth, dim=1)
        return top.values, top.indices

    def _screened_top(self, queries: torch.Tensor, depth: int, candidates: int, excluded: list[np.ndarray]):
        """As `_exact_top`, with the bfloat16 screen (module docstring) keeping `candidates` rows per query for the
        exact re-scoring; uncertified queries go to `_exact_top`."""
        rough = self._mask(queries.to(torch.bfloat16) @ self._screen.T, excluded)
        cut = torch.topk(rough, candidates, dim=1)
        floor = cut.values[:, -1].float()  # deepest screened score: no item outside the cut screens above it
        exact = torch.bmm(self._vectors[cut.indices], queries.unsqueeze(2)).squeeze(2)
        exact = exact.masked_fill(torch.isinf(cut.values), float("-inf"))  # excluded rows stay out
        top = torch.topk(exact, depth, dim=1)
        values, rows = top.values, cut.indices.gather(1, top.indices)
        bound = queries.norm(dim=1) * (self._largest_norm * screen_error_bound(queries.shape[1]))
        certified = (values[:, -1] > floor + bound) | torch.isinf(floor)  # -inf floor: every kept item was cut
        redo = torch.nonzero(~certified).squeeze(1)
        if len(redo):
            values[redo], rows[redo] = self._exact_top(queries[redo], depth, [excluded[q] for q in redo.tolist()])
        return values, rows

    def _faiss_search(self, queries: np.ndarray, k: int, excluded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """GPU: faiss search k + the longest exclusion deep, then the excluded rows dropped (scores -inf, pushed
        after the kept ones in order) and k kept."""
        depth = min(len(self.ids), k + max((len(e) for e in excluded), default=0))
        scores, rows = self.index.search(queries, depth)
        drop = rows < 0
        for q, seen in enumerate(excluded):
            if len(seen):
                drop[q] |= np.isin(rows[q], seen)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept rows first, in faiss's order
        scores = np.where(drop, -np.inf, scores).astype(np.float32)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def nearest(ids: Sequence[str], queries: np.ndarray, index: VectorIndex, k: int) -> dict[str, list[tuple[str, float]]]:
    """Each query `ids[i]` (vector `queries[i]`, shape (n, dim)) -> its `k` nearest ids of `index` with their
    scores, best first, the query's own id excluded."""
    if not len(ids) or not index.ids:
        return {item: [] for item in ids}
    found, scores = index.search(queries, k, exclude=[[item] for item in ids])
    return {item: list(zip(hits, row[: len(hits)].tolist())) for item, hits, row in zip(ids, found, scores)}
