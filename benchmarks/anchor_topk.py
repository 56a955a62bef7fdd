"""Top-k retrieval with history filtering: queries per second over 55,000 random 200-d float32 items, k = 50,
10,000 users (random query vectors), each with a history of about 140 items (Poisson(140), distinct) that must
not be returned.

Ours: `recommenders.index.VectorIndex.search(queries, k, exclude=histories)`, the path of ItemKNN and serving
(string ids in and out, query normalisation included). Anchor: faiss `IndexFlatIP.search(queries, k + longest
history)` called straight on the same normalised vectors, then each user's history rows dropped with
`np.isin` in a per-user loop and the first k kept (integer rows out, no id mapping). Both use faiss on all cores;
index construction is not timed. The quality column says whether both returned the same top-k for every user.

    .venv/bin/python benchmarks/anchors.py --only topk [--quick]
"""
from __future__ import annotations

import os
import time

import faiss
import numpy as np

from benchmarks.anchors import device_label
from catalog.io import l2_normalize
from recommenders.index import VectorIndex

ITEMS, DIM, K, USERS, HISTORY = 55_000, 200, 50, 10_000, 140


def data(users: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
    """Item ids, items float32 (ITEMS, DIM), queries float32 (users, DIM), history rows per user (int64)."""
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((ITEMS, DIM), dtype=np.float32)
    queries = rng.standard_normal((users, DIM), dtype=np.float32)
    sizes = np.clip(rng.poisson(HISTORY, users), 1, ITEMS - K)
    histories = [rng.choice(ITEMS, size, replace=False) for size in sizes]
    return [f"i{r:05d}" for r in range(ITEMS)], items, queries, histories


def anchor_search(index: faiss.IndexFlatIP, queries: np.ndarray, histories: list[np.ndarray], k: int) -> np.ndarray:
    """Plain faiss: search k + longest history, drop history rows per user, keep k. int64 (n, k)."""
    _, rows = index.search(queries, k + max(len(h) for h in histories))
    return np.stack([row[~np.isin(row, seen)][:k] for row, seen in zip(rows, histories)])


def measure(quick: bool) -> list[dict]:
    """One row: queries/s of ours vs plain faiss, best of `repeats` full passes over all users."""
    users = 2_000 if quick else USERS
    repeats = 2 if quick else 3
    ids, items, queries, histories = data(users)
    excluded = [[ids[r] for r in h] for h in histories]
    ours_index = VectorIndex(ids, items, normalize=True)
    plain = faiss.IndexFlatIP(DIM)
    plain.add(l2_normalize(items))
    normalized_queries = l2_normalize(queries)
    load_before = os.getloadavg()[0]
    ours_s, anchor_s = float("inf"), float("inf")
    for _ in range(repeats):  # alternate, so both see the same machine load
        start = time.perf_counter()
        found, _ = ours_index.search(queries, K, exclude=excluded)
        ours_s = min(ours_s, time.perf_counter() - start)
        start = time.perf_counter()
        rows = anchor_search(plain, normalized_queries, histories, K)
        anchor_s = min(anchor_s, time.perf_counter() - start)
    load_after = os.getloadavg()[0]
    same = sum(found[u] == [ids[r] for r in rows[u]] for u in range(users))
    return [{
        "name": f"top-{K} retrieval, {ITEMS // 1000}k x {DIM}-d items, {users} users, history filtered",
        "ours": users / ours_s,
        "anchor": users / anchor_s,
        "unit": "queries/s",
        "device": f"{device_label()}, faiss {faiss.omp_get_max_threads()} threads, "
                  f"load avg {load_before:.1f}-{load_after:.1f}",
        "quality": f"same top-{K} for {same}/{users} users",
        "note": (f"anchor: faiss IndexFlatIP.search(k + longest history = {K + max(map(len, histories))}) then "
                 f"np.isin filter per user, int rows out; ours maps string ids in and out; best of {repeats}"),
    }]


if __name__ == "__main__":
    print(measure(quick=True))
