"""Ranking metrics: hand-computed cases for every metric and variant, and an independent oracle (trec_eval).

The oracle is pytrec_eval (pytrec-eval-terrier): it is fast to import; ranx agrees on these definitions but
its numba JIT costs tens of seconds on a fresh environment, too slow for the default test run.
"""
from __future__ import annotations

import math
import time

import numpy as np
import polars as pl
import pytest
import pytrec_eval

from evaluation.metrics import (
    METRIC_FUNCTIONS,
    METRIC_NAMES,
    average_precision_at_k,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_user_metrics,
    precision_at_k,
    recall_at_k,
)

L3 = 1 / math.log2(3)  # discount of rank 2 = 0.630930
L4 = 1 / math.log2(4)  # discount of rank 3 = 0.5
L5 = 1 / math.log2(5)  # discount of rank 4 = 0.430677

# The shared hand case: 3 relevant items, hits at ranks 2 and 4, "x" never retrieved.
RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "d", "x"}


def test_hit_rate_hand_cases():
    assert hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0  # rank 1 = "a", a miss
    assert hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0  # rank 2 = "b", a hit


def test_recall_hand_cases_and_denominators():
    assert recall_at_k(RANKED, RELEVANT, 1) == 0.0
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)  # 1 hit / |rel| 3
    assert recall_at_k(RANKED, RELEVANT, 2, denominator="min_k_relevant") == pytest.approx(1 / 2)  # / min(2, 3)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)  # 2 hits / 3
    assert recall_at_k(RANKED, RELEVANT, 5, denominator="min_k_relevant") == pytest.approx(2 / 3)  # / min(5, 3)


def test_precision_divides_by_k_even_for_short_lists():
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)  # 1 hit / 2
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)  # 2 hits / 5
    assert precision_at_k(RANKED, RELEVANT, 10) == pytest.approx(2 / 10)  # 5 items only, still / 10


def test_ndcg_binary_hand_cases():
    assert ndcg_at_k(RANKED, RELEVANT, 1) == 0.0
    # k=2: DCG = 1/log2(3); IDCG over min(3, 2) = 2 positions = 1 + 1/log2(3)  -> 0.386853
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(L3 / (1 + L3))
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.386853, abs=1e-6)
    # k=5: DCG = 1/log2(3) + 1/log2(5); IDCG over min(3, 5) = 3 positions = 1 + 1/log2(3) + 1/log2(4) -> 0.498189
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx((L3 + L5) / (1 + L3 + L4))
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.498189, abs=1e-6)
    assert ndcg_at_k(["b", "d", "x"], RELEVANT, 5) == pytest.approx(1.0)  # the ideal order


def test_ndcg_published_olga_idcg_lone_hit_scores_0613():
    # one relevant item at rank 1: DCG = 1; flawed IDCG = 1 + 1/log2(3) (min(1, k) + 1 = 2 terms)
    assert ndcg_at_k(["a", "z"], {"a"}, 200, published_olga_idcg=True) == pytest.approx(1 / (1 + L3))
    assert ndcg_at_k(["a", "z"], {"a"}, 200, published_olga_idcg=True) == pytest.approx(0.613147, abs=1e-6)
    assert ndcg_at_k(["a", "z"], {"a"}, 200) == 1.0
    # two relevant, both on top, k=10: DCG = 1 + 1/log2(3); flawed IDCG = 1 + 1/log2(3) + 1/log2(4) -> 0.765361
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10, published_olga_idcg=True) == pytest.approx((1 + L3) / (1 + L3 + L4))
    # k=1 < |rel|: flawed IDCG = 1 + 1/log2(3) (min(2, 1) + 1 = 2 terms)
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 1, published_olga_idcg=True) == pytest.approx(1 / (1 + L3))


def test_ndcg_graded_hand_cases():
    gains = {"a": 1.0, "c": 3.0, "d": 2.0}
    relevant = {"a", "c", "d"}
    # k=3: DCG = 1/1 + 0 + 3/log2(4) = 2.5; IDCG = 3 + 2/log2(3) + 1/log2(4) = 4.761860 -> 0.525005
    assert ndcg_at_k(["a", "b", "c"], relevant, 3, gains=gains) == pytest.approx(2.5 / (3 + 2 * L3 + L4))
    assert ndcg_at_k(["a", "b", "c"], relevant, 3, gains=gains) == pytest.approx(0.525005, abs=1e-6)
    # k=2: DCG = 1; IDCG = 3 + 2/log2(3) -> 0.234639
    assert ndcg_at_k(["a", "b", "c"], relevant, 2, gains=gains) == pytest.approx(1 / (3 + 2 * L3))
    assert ndcg_at_k(["c", "d", "a"], relevant, 3, gains=gains) == pytest.approx(1.0)
    # the same ranking scores differently with binary gains: DCG = 1 + 0.5; IDCG = 1 + 1/log2(3) + 0.5
    assert ndcg_at_k(["a", "b", "c"], relevant, 3) == pytest.approx(1.5 / (1 + L3 + L4))


def test_mrr_hand_cases():
    assert mrr_at_k(RANKED, RELEVANT, 1) == 0.0
    assert mrr_at_k(RANKED, RELEVANT, 5) == pytest.approx(1 / 2)  # first hit at rank 2
    assert mrr_at_k(["a", "b", "c", "x"], {"x"}, 4) == pytest.approx(1 / 4)
    assert mrr_at_k(["a", "b", "c", "x"], {"x"}, 3) == 0.0  # the hit lies beyond k


def test_average_precision_hand_cases_and_denominators():
    # k=4: hits at ranks 2 and 4 -> precision 1/2 and 2/4 -> sum 1.0
    assert average_precision_at_k(RANKED, RELEVANT, 4) == pytest.approx(1 / 3)  # / |rel| 3
    assert average_precision_at_k(RANKED, RELEVANT, 4, denominator="min_k_relevant") == pytest.approx(1 / 3)
    assert average_precision_at_k(RANKED, RELEVANT, 4, denominator="k") == pytest.approx(1 / 4)  # / k 4
    # k=2: hit at rank 2 -> sum 1/2
    assert average_precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 6)  # / 3
    assert average_precision_at_k(RANKED, RELEVANT, 2, denominator="min_k_relevant") == pytest.approx(1 / 4)  # / 2
    assert average_precision_at_k(RANKED, RELEVANT, 1) == 0.0


def test_metric_functions_registry_names_all_six():
    assert set(METRIC_FUNCTIONS) == {"hit_rate", "recall", "precision", "ndcg", "mrr", "map"}
    assert set(METRIC_NAMES) == set(METRIC_FUNCTIONS)
    assert METRIC_FUNCTIONS["map"](RANKED, RELEVANT, 4) == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", sorted(METRIC_FUNCTIONS))
def test_empty_relevant_and_duplicates_raise(name):
    with pytest.raises(ValueError, match="empty relevant"):
        METRIC_FUNCTIONS[name](["a"], set(), 1)
    with pytest.raises(ValueError, match="more than once"):
        METRIC_FUNCTIONS[name](["a", "b", "a"], {"a"}, 2)
    with pytest.raises(ValueError, match="positive integer"):
        METRIC_FUNCTIONS[name](["a"], {"a"}, 0)


def test_invalid_variants_raise():
    with pytest.raises(ValueError, match="denominator"):
        recall_at_k(RANKED, RELEVANT, 2, denominator="k")
    with pytest.raises(ValueError, match="denominator"):
        average_precision_at_k(RANKED, RELEVANT, 2, denominator="all")
    with pytest.raises(ValueError, match="no gain"):
        ndcg_at_k(["a"], {"a", "b"}, 2, gains={"a": 1.0})
    with pytest.raises(ValueError, match="binary"):
        ndcg_at_k(["a"], {"a", "b"}, 2, gains={"a": 1.0, "b": 2.0}, published_olga_idcg=True)


def test_per_user_metrics_table_shape_types_and_missing_users():
    rankings = {"u1": RANKED, "ghost": ["a"]}  # "ghost" has no relevant entry: ignored
    relevant = {"u1": RELEVANT, "u2": {"a"}, "empty": set()}  # u2 has no ranking; "empty" is skipped
    table = per_user_metrics(rankings, relevant, ks=[2, 5])
    assert table.columns == ["user_id", "metric", "k", "value"]
    assert table.dtypes == [pl.String, pl.String, pl.Int32, pl.Float64]
    assert table.height == 2 * 6 * 2  # users × metrics × ks
    assert set(table["user_id"]) == {"u1", "u2"}
    assert table.filter(pl.col("user_id") == "u2")["value"].to_list() == [0.0] * 12

    def value(metric: str, k: int) -> float:
        return table.filter((pl.col("user_id") == "u1") & (pl.col("metric") == metric) & (pl.col("k") == k)).item(
            0, "value")

    assert value("recall", 5) == pytest.approx(2 / 3)
    assert value("precision", 5) == pytest.approx(2 / 5)
    assert value("ndcg", 2) == pytest.approx(L3 / (1 + L3))
    assert value("mrr", 5) == pytest.approx(1 / 2)
    assert value("map", 5) == pytest.approx(1 / 3)
    assert value("hit_rate", 2) == 1.0


def test_per_user_metrics_forwards_variants_to_their_metric():
    rankings = {"u1": RANKED, "lone": ["a", "b"]}
    relevant = {"u1": RELEVANT, "lone": {"a"}}
    default = per_user_metrics(rankings, relevant, ks=[2, 4])
    variant = per_user_metrics(rankings, relevant, ks=[2, 4], recall_denominator="min_k_relevant",
                               map_denominator="k", published_olga_idcg=True)
    joined = default.join(variant, on=["user_id", "metric", "k"], suffix="_variant")
    changed = joined.filter(pl.col("value") != pl.col("value_variant"))
    assert set(changed["metric"]) == {"recall", "map", "ndcg"}
    pick = variant.filter((pl.col("user_id") == "u1") & (pl.col("k") == 2))
    assert pick.filter(pl.col("metric") == "recall").item(0, "value") == pytest.approx(1 / 2)
    assert variant.filter((pl.col("user_id") == "u1") & (pl.col("k") == 4) & (pl.col("metric") == "map")).item(
        0, "value") == pytest.approx(1 / 4)
    lone_ndcg = variant.filter((pl.col("user_id") == "lone") & (pl.col("metric") == "ndcg"))["value"].to_list()
    assert lone_ndcg == pytest.approx([1 / (1 + L3)] * 2)


def test_per_user_metrics_graded_gains_and_metric_subset():
    table = per_user_metrics({"u": ["a", "b", "c"]}, {"u": {"a", "c", "d"}}, ks=[3], metrics=["ndcg"],
                             ndcg_gains={"u": {"a": 1.0, "c": 3.0, "d": 2.0}})
    assert table.height == 1
    assert table.item(0, "value") == pytest.approx(2.5 / (3 + 2 * L3 + L4))
    with pytest.raises(ValueError, match="unknown metric"):
        per_user_metrics({}, {"u": {"a"}}, ks=[1], metrics=["auc"])


def _random_case(seed: int, n_users: int = 200, n_items: int = 300, length: int = 60):
    """Random tie-free rankings (60 items each) and relevant sets of 1..30 items, with graded gains 1..3."""
    rng = np.random.default_rng(seed)
    items = [f"t{i}" for i in range(n_items)]
    rankings, relevant, gains = {}, {}, {}
    for u in range(n_users):
        user = f"u{u}"
        rankings[user] = [items[i] for i in rng.permutation(n_items)[:length]]
        rel = [items[i] for i in rng.choice(n_items, size=int(rng.integers(1, 31)), replace=False)]
        relevant[user] = set(rel)
        gains[user] = {item: float(g) for item, g in zip(rel, rng.integers(1, 4, size=len(rel)))}
    return rankings, relevant, gains


def _trec_eval(qrels: dict, rankings: dict, measures: set[str], cut: int | None = None) -> dict:
    """Scores by pytrec_eval; scores are strictly decreasing with rank (tie-free), runs optionally cut to `cut`."""
    run = {user: {item: float(len(ranked) - i) for i, item in enumerate(ranked[:cut])}
           for user, ranked in rankings.items()}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


def test_against_trec_eval_on_random_rankings():
    rankings, relevant, gains = _random_case(seed=7)
    ks = [1, 5, 10, 50]
    ours = per_user_metrics(rankings, relevant, ks)
    graded = per_user_metrics(rankings, relevant, ks, metrics=["ndcg"], ndcg_gains=gains)
    binary_qrels = {user: {item: 1 for item in rel} for user, rel in relevant.items()}
    graded_qrels = {user: {item: int(g) for item, g in gains[user].items()} for user in relevant}
    cutoffs = ",".join(map(str, ks))
    oracle = _trec_eval(binary_qrels, rankings, {f"P.{cutoffs}", f"recall.{cutoffs}", f"ndcg_cut.{cutoffs}",
                                                 f"map_cut.{cutoffs}", f"success.{cutoffs}"})
    oracle_graded = _trec_eval(graded_qrels, rankings, {f"ndcg_cut.{cutoffs}"})
    ours_by_key = {(u, m, k): v for u, m, k, v in ours.iter_rows()}
    graded_by_key = {(u, k): v for u, _, k, v in graded.iter_rows()}
    names = {"precision": "P", "recall": "recall", "ndcg": "ndcg_cut", "map": "map_cut", "hit_rate": "success"}
    assert len(oracle) == len(relevant)  # every query is present in the run
    for k in ks:
        mrr_oracle = _trec_eval(binary_qrels, rankings, {"recip_rank"}, cut=k)  # MRR@k = RR of the top-k run
        for user in relevant:
            for ours_name, trec_name in names.items():
                assert ours_by_key[(user, ours_name, k)] == pytest.approx(oracle[user][f"{trec_name}_{k}"], abs=1e-9)
            assert ours_by_key[(user, "mrr", k)] == pytest.approx(mrr_oracle[user]["recip_rank"], abs=1e-9)
            assert graded_by_key[(user, k)] == pytest.approx(oracle_graded[user][f"ndcg_cut_{k}"], abs=1e-9)
    # the comparison is not vacuous: some users hit and some miss at every cutoff above 1
    hits_at_10 = ours.filter((pl.col("metric") == "hit_rate") & (pl.col("k") == 10))["value"]
    assert 0 < hits_at_10.sum() < len(relevant)


def test_per_user_table_matches_scalar_functions():
    rankings, relevant, gains = _random_case(seed=3, n_users=30)
    table = per_user_metrics(rankings, relevant, [3, 20], recall_denominator="min_k_relevant",
                             map_denominator="min_k_relevant")
    variants = {"recall": {"denominator": "min_k_relevant"}, "map": {"denominator": "min_k_relevant"}}
    for user, metric, k, value in table.iter_rows():
        expected = METRIC_FUNCTIONS[metric](rankings[user], relevant[user], k, **variants.get(metric, {}))
        assert value == pytest.approx(expected, abs=1e-12)


def test_per_user_metrics_is_fast_for_thousands_of_users():
    rng = np.random.default_rng(0)
    items = np.array([f"t{i}" for i in range(5000)])
    rankings = {f"u{u}": items[rng.permutation(5000)[:200]].tolist() for u in range(3000)}
    relevant = {f"u{u}": set(items[rng.choice(5000, size=20, replace=False)].tolist()) for u in range(3000)}
    start = time.perf_counter()
    table = per_user_metrics(rankings, relevant, ks=[10, 50, 200])
    elapsed = time.perf_counter() - start
    assert table.height == 3000 * 6 * 3
    assert elapsed < 1.0, f"per_user_metrics took {elapsed:.2f} s for 3000 users at k=200"
