"""Item-KNN and the vector index on a planted data set whose right answer is known.

Two clusters of 30 items with distinct centroids; each user plays 8 items of one cluster (history) and 4
more of the same cluster later (held out). Ranking the user's own cluster first gives Recall@10 ≈ 10/22 = 0.45
(no cross-cluster item can be held out); a random ranking of the 52 unplayed items gives about 10/52 = 0.19.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from catalog.histories import histories_from
from catalog.io import ItemVectors, l2_normalize
from recommenders.base import RECOMMENDERS
from recommenders.index import VectorIndex, native_bfloat16, screen_error_bound
from recommenders.knn import ItemKNN

CLUSTERS, PER_CLUSTER, USERS, HISTORY, HELD, DIM, K = 2, 30, 60, 8, 4, 12, 10


def planted(seed: int = 0):
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(CLUSTERS, DIM)) * 3.0
    ids = [f"c{c}_{j:02d}" for c in range(CLUSTERS) for j in range(PER_CLUSTER)]
    matrix = np.vstack([centroids[c] + rng.normal(size=(PER_CLUSTER, DIM)) for c in range(CLUSTERS)])
    histories, held = {}, {}
    for u in range(USERS):
        cluster = u % CLUSTERS
        picks = rng.choice(PER_CLUSTER, size=HISTORY + HELD, replace=False)
        items = [f"c{cluster}_{j:02d}" for j in picks]
        histories[f"u{u:02d}"], held[f"u{u:02d}"] = items[:HISTORY], set(items[HISTORY:])
    return ItemVectors(ids, matrix.astype(np.float32)), histories, held


def train_frame(histories) -> pl.DataFrame:
    from datetime import datetime, timedelta

    rows = [(u, t, datetime(2024, 1, 1) + timedelta(hours=i), 1)
            for u, items in histories.items() for i, t in enumerate(items)]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "track_id": pl.String,
                                      "timestamp": pl.Datetime("us"), "count": pl.Int32}, orient="row")


def mean_recall(rankings, held) -> float:
    return float(np.mean([len(set(rankings.get(u, [])) & rel) / len(rel) for u, rel in held.items()]))


def test_registered():
    assert RECOMMENDERS["knn"] is ItemKNN


@pytest.mark.parametrize("standardize", [True, False])
def test_knn_recovers_held_out_items_far_above_random_vectors(standardize):
    items, histories, held = planted()
    train = train_frame(histories)
    assert histories_from(train) == histories
    knn = ItemKNN(standardize=standardize).fit(train, items)
    recall = mean_recall(knn.recommend(histories, K), held)
    random_items = ItemVectors(items.ids, np.random.default_rng(1).normal(size=items.matrix.shape).astype(np.float32))
    floor = mean_recall(ItemKNN(standardize=standardize).fit(train, random_items).recommend(histories, K), held)
    assert recall > 0.40  # ideal own-cluster ranking: 10/22 = 0.45
    assert floor < 0.30  # random: about 10/52 = 0.19
    assert recall - floor > 0.2


def test_history_is_never_recommended_and_k_is_respected():
    items, histories, _ = planted()
    rankings = ItemKNN().fit(train_frame(histories), items).recommend(histories, k=55)
    assert set(rankings) == set(histories)
    for user, ranked in rankings.items():
        assert not set(ranked) & set(histories[user])
        assert len(ranked) == len(set(ranked)) == CLUSTERS * PER_CLUSTER - HISTORY  # all the rest, once each
    short = ItemKNN().fit(train_frame(histories), items).recommend(histories, k=3)
    assert all(len(r) == 3 for r in short.values())


def test_candidates_are_respected():
    items, histories, _ = planted()
    knn = ItemKNN().fit(train_frame(histories), items)
    # candidates from both clusters, including some of u00's history
    candidates = [f"c0_{j:02d}" for j in range(0, 30, 3)] + [f"c1_{j:02d}" for j in range(0, 30, 3)]
    rankings = knn.recommend(histories, k=K, candidates=candidates)
    for user, ranked in rankings.items():
        assert set(ranked) <= set(candidates)
        assert not set(ranked) & set(histories[user])
        own = f"c{int(user[1:]) % CLUSTERS}_"
        assert ranked[0].startswith(own), (user, ranked)  # the best candidate is in the user's cluster
    with pytest.raises(KeyError, match="nope"):
        knn.recommend(histories, k=K, candidates=["c0_00", "nope"])


def test_users_without_known_items_get_nothing():
    items, histories, _ = planted()
    knn = ItemKNN().fit(train_frame(histories), items)
    rankings = knn.recommend({"stranger": ["unknown_track"], "u00": histories["u00"]}, k=K)
    assert set(rankings) == {"u00"}
    with pytest.raises(RuntimeError, match="fit"):
        ItemKNN().recommend(histories, k=K)
    with pytest.raises(ValueError, match="item vectors"):
        ItemKNN().fit(train_frame(histories), None)


@pytest.mark.parametrize("standardize", [True, False])
def test_save_load_gives_identical_recommendations(tmp_path, standardize):
    items, histories, _ = planted()
    knn = ItemKNN(standardize=standardize).fit(train_frame(histories), items)
    folder = knn.save(tmp_path / "knn")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = ItemKNN.load(folder)
    assert loaded.options.standardize is standardize and loaded.items.ids == items.ids
    np.testing.assert_array_equal(loaded.items.matrix, knn.items.matrix)
    assert loaded.recommend(histories, K) == knn.recommend(histories, K)


def brute_force(matrix, queries, k, exclude=None, normalize=True):
    scores = l2_normalize(queries) @ l2_normalize(matrix).T if normalize else queries @ matrix.T
    out = []
    for q in range(len(queries)):
        order = [int(i) for i in np.argsort(-scores[q], kind="stable")
                 if exclude is None or int(i) not in exclude[q]]
        out.append((order[:k], scores[q][order[:k]]))
    return out


def random_items(n: int, dim: int, n_queries: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ids, normal item vectors float32 (n, dim) with norms spread over 0.1-10x, queries float32 (n_queries, dim)."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n, dim)).astype(np.float32) * rng.uniform(0.1, 10, size=(n, 1)).astype(np.float32)
    return [f"i{j}" for j in range(n)], matrix, rng.normal(size=(n_queries, dim)).astype(np.float32)


def assert_equals_brute_force(index, matrix, queries, k, exclude_rows=None):
    """`index.search` gives numpy's exact top-k ids and scores (cosine when the index normalises)."""
    exclude = None if exclude_rows is None else [[index.ids[r] for r in e] for e in exclude_rows]
    found, scores = index.search(queries, k=k, exclude=exclude)
    for q, (rows, expected) in enumerate(brute_force(matrix, queries, k, exclude_rows, index.normalize)):
        assert found[q] == [index.ids[r] for r in rows]
        np.testing.assert_allclose(scores[q], expected, rtol=1e-5, atol=1e-5)


def test_vector_index_equals_brute_force_cosine():
    ids, matrix, queries = random_items(300, 16, 7, seed=0)
    index = VectorIndex(ids, matrix, normalize=True)
    assert_equals_brute_force(index, matrix, queries, 20)
    # with exclusions: the next best fill in
    assert_equals_brute_force(index, matrix, queries, 20,
                              [set(brute_force(matrix, queries[q:q + 1], 5)[0][0]) for q in range(7)])


def test_vector_index_pads_when_fewer_items_than_k():
    index = VectorIndex(["a", "b", "c"], np.eye(3, dtype=np.float32))
    found, scores = index.search(np.array([[1.0, 0.5, 0.0]], np.float32), k=5, exclude=[["b"]])
    assert found == [["a", "c"]]
    assert scores.shape == (1, 5) and np.isinf(scores[0, 2:]).all() and scores[0, 0] > scores[0, 1]


def test_exclusions_ignore_unknown_ids_and_empty_groups():
    index = VectorIndex(["a", "b", "c"], np.eye(3, dtype=np.float32))
    queries = np.array([[1.0, 0.5, 0.2]] * 3, np.float32)
    found, _ = index.search(queries, k=2, exclude=[["zzz", "a"], [], ["zzz"]])
    assert found == [["b", "c"], ["a", "b"], ["a", "b"]]
    assert [r.tolist() for r in index.rows_of([["c", "nope", "a"], []])] == [[2, 0], []]


def test_inner_product_without_normalisation():
    matrix = np.array([[1.0, 0.0], [10.0, 1.0]], np.float32)
    found, _ = VectorIndex(["small", "big"], matrix, normalize=False).search(np.array([[1.0, 0.0]], np.float32), 1)
    assert found == [["big"]]
    found, _ = VectorIndex(["small", "big"], matrix, normalize=True).search(np.array([[1.0, 0.0]], np.float32), 1)
    assert found == [["small"]]


needs_bfloat16 = pytest.mark.skipif(not native_bfloat16(), reason="this CPU has no native bfloat16: no screening")


@needs_bfloat16
def test_screened_inner_product_search_equals_brute_force_with_exclusions():
    ids, matrix, queries = random_items(2_000, 24, 300, seed=3)
    index = VectorIndex(ids, matrix, normalize=False)
    rng = np.random.default_rng(3)
    assert index._screen is not None
    assert_equals_brute_force(index, matrix, queries, 25,
                              [set(rng.choice(2_000, 30, replace=False).tolist()) for _ in range(300)])


@needs_bfloat16
def test_near_ties_the_screen_cannot_separate_fall_back_to_the_exact_product(monkeypatch):
    rng = np.random.default_rng(4)
    base = rng.normal(size=(1, 16)).astype(np.float32)
    matrix = base + 1e-3 * rng.normal(size=(500, 16)).astype(np.float32)  # closer than bfloat16 can resolve
    queries = base + 0.1 * rng.normal(size=(5, 16)).astype(np.float32)
    ids = [f"i{j}" for j in range(500)]
    exact_calls = []
    original = VectorIndex._exact_top
    monkeypatch.setattr(VectorIndex, "_exact_top",
                        lambda self, q, depth, ex: exact_calls.append(len(q)) or original(self, q, depth, ex))
    found, scores = VectorIndex(ids, matrix, normalize=True).search(queries, k=10)
    assert sum(exact_calls) == 5
    for q, (rows, expected) in enumerate(brute_force(matrix, queries, 10)):
        np.testing.assert_allclose(scores[q], expected, rtol=0, atol=1e-7)  # the exact top scores, ties aside
        assert len(set(found[q]) & {ids[r] for r in rows}) >= 8


@needs_bfloat16
def test_screen_error_bound_holds():
    import torch

    rng = np.random.default_rng(5)
    vectors = torch.from_numpy(rng.normal(size=(3_000, 64)).astype(np.float32) * 3)
    queries = torch.from_numpy(rng.normal(size=(50, 64)).astype(np.float32))
    rough = (queries.to(torch.bfloat16) @ vectors.to(torch.bfloat16).T).float()
    scale = queries.norm(dim=1, keepdim=True) * vectors.norm(dim=1)
    worst = float(((rough - queries @ vectors.T).abs() / scale).max())
    assert 0 < worst <= screen_error_bound(64) < 0.013
