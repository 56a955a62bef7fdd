"""Per-user ranking metrics with every definition explicit (DESIGN.md, "Metrics").

Defaults follow `rs_metrics` (the code behind the published audio-representation recommender work). For one
user, `ranked` is the top list after removing the user's training items (best first) and `relevant` is the
set of relevant ids. With `hits_i` = 1 when the item at rank i (1-based) is relevant:

- HitRate@k   = 1 if any hit in the top k, else 0
- Recall@k    = Σ_{i≤k} hits_i / |relevant|          (variant: / min(k, |relevant|))
- Precision@k = Σ_{i≤k} hits_i / k                   (k, not len(ranked): a short list is not rewarded)
- NDCG@k      = DCG@k / IDCG@k, DCG@k = Σ_{i≤k} gain_i / log2(i + 1); binary gain by default, IDCG over
  min(|relevant|, k) ideal positions; graded gains give linear-gain NDCG (Järvelin & Kekäläinen) with IDCG
  from the sorted gains. `published_olga_idcg=True` reproduces the published OLGA code's flaw (one extra
  ideal term).
- MRR@k       = 1 / rank of the first hit within the top k, else 0
- AP@k        = Σ_{i≤k} hits_i · Precision@i / |relevant|  (variants: / min(k, |relevant|), / k); MAP = mean AP

Every metric is computed by one array function over a (users, depth) judgement matrix; the scalar functions
run the same code on a single row, so the per-user table and the scalar definitions cannot disagree.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

RecallDenominator = Literal["relevant", "min_k_relevant"]
APDenominator = Literal["relevant", "min_k_relevant", "k"]
METRIC_NAMES: tuple[str, ...] = ("hit_rate", "recall", "precision", "ndcg", "mrr", "map")


@dataclass(frozen=True)
class Judgements:
    """Relevance judgements of the top `depth` ranks of `n` users.

    hits: bool (n, depth), True where the item at that rank is relevant (False past the end of a short list).
    gains: float64 (n, depth), the gain of the item at each rank (1.0 for a binary hit, 0.0 otherwise).
    ideal_gains: float64 (n, depth), each user's relevant gains sorted descending, zero-padded.
    n_relevant: int64 (n,), |relevant| per user (always ≥ 1).
    graded: True when the gains came from graded judgements, False for binary gains.
    """

    hits: np.ndarray
    gains: np.ndarray
    ideal_gains: np.ndarray
    n_relevant: np.ndarray
    graded: bool

    @property
    def depth(self) -> int:
        return int(self.hits.shape[1])


def judge(
    rankings: Sequence[Sequence[str]],
    relevant: Sequence[Collection[str]],
    depth: int,
    gains: Sequence[Mapping[str, float]] | None = None,
) -> Judgements:
    """Judge the top `depth` ranks of each user's ranking against that user's relevant set.

    `gains[u]` (optional) maps each relevant id of user u to its graded gain (> 0); ranked items outside the
    relevant set gain 0. Raises ValueError for an empty relevant set, a duplicate in a ranking, a relevant id
    without a gain, or a non-positive gain.
    """
    _check_k(depth)
    if len(rankings) != len(relevant) or (gains is not None and len(gains) != len(relevant)):
        raise ValueError("judge: rankings, relevant (and gains) must have one entry per user")
    n = len(relevant)
    hits = np.zeros((n, depth), dtype=bool)
    gain_matrix = np.zeros((n, depth), dtype=np.float64)
    ideal = np.zeros((n, depth), dtype=np.float64)
    n_relevant = np.zeros(n, dtype=np.int64)
    for row, (ranked, rel) in enumerate(zip(rankings, relevant)):
        rel = rel if isinstance(rel, (set, frozenset)) else set(rel)
        if not rel:
            raise ValueError("empty relevant set: drop users without relevant items before computing metrics")
        if len(set(ranked)) != len(ranked):
            duplicate = next(item for i, item in enumerate(ranked) if item in ranked[:i])
            raise ValueError(f"ranking contains {duplicate!r} more than once")
        n_relevant[row] = len(rel)
        top = ranked[:depth]
        hits[row, : len(top)] = [item in rel for item in top]
        if gains is None:
            gain_matrix[row] = hits[row]
            ideal[row, : min(len(rel), depth)] = 1.0
        else:
            user_gains = _graded_gains(rel, gains[row])
            gain_matrix[row, : len(top)] = [user_gains.get(item, 0.0) for item in top]
            best = sorted(user_gains.values(), reverse=True)[:depth]
            ideal[row, : len(best)] = best
    return Judgements(hits, gain_matrix, ideal, n_relevant, graded=gains is not None)


def _graded_gains(relevant: Collection[str], gains: Mapping[str, float]) -> dict[str, float]:
    missing = [item for item in relevant if item not in gains]
    if missing:
        raise ValueError(f"graded NDCG: no gain for relevant item {missing[0]!r}")
    graded = {item: float(gains[item]) for item in relevant}
    if min(graded.values()) <= 0:
        raise ValueError("graded NDCG: gains of relevant items must be > 0")
    return graded


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _check_depth(judged: Judgements, k: int) -> None:
    _check_k(k)
    if k > judged.depth:
        raise ValueError(f"k={k} exceeds the judged depth {judged.depth}")


def _discounts(length: int) -> np.ndarray:
    """1 / log2(i + 1) for ranks i = 1..length, shape (length,)."""
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))


# ---- array definitions: (users, depth) judgements -> (users,) float64 scores -------------------------------

def hit_rate_array(judged: Judgements, k: int) -> np.ndarray:
    """1.0 where any of the top k is relevant, else 0.0."""
    _check_depth(judged, k)
    return judged.hits[:, :k].any(axis=1).astype(np.float64)


def recall_array(judged: Judgements, k: int, denominator: RecallDenominator = "relevant") -> np.ndarray:
    """Hits in the top k / |relevant| ("relevant") or / min(k, |relevant|) ("min_k_relevant")."""
    _check_depth(judged, k)
    hits = judged.hits[:, :k].sum(axis=1)
    if denominator == "relevant":
        return hits / judged.n_relevant
    if denominator == "min_k_relevant":
        return hits / np.minimum(judged.n_relevant, k)
    raise ValueError(f"recall denominator must be 'relevant' or 'min_k_relevant', got {denominator!r}")


def precision_array(judged: Judgements, k: int) -> np.ndarray:
    """Hits in the top k / k."""
    _check_depth(judged, k)
    return judged.hits[:, :k].sum(axis=1) / k


def ndcg_array(judged: Judgements, k: int, published_olga_idcg: bool = False) -> np.ndarray:
    """DCG@k / IDCG@k with the judged gains (binary or graded), discount 1 / log2(rank + 1).

    `published_olga_idcg=True` reproduces a flaw of the published OLGA artist-similarity code: its IDCG sums
    min(|relevant|, k) + 1 unit terms instead of min(|relevant|, k), so a lone hit at rank 1 scores
    1 / (1 + 1/log2(3)) ≈ 0.613 instead of 1.0. Binary gains only; use it to compare with published numbers.
    """
    _check_depth(judged, k)
    discounts = _discounts(k + 1)
    dcg = judged.gains[:, :k] @ discounts[:k]
    if published_olga_idcg:
        if judged.graded:
            raise ValueError("published_olga_idcg reproduces a binary-gain flaw; it cannot be used with graded gains")
        ideal_terms = np.minimum(judged.n_relevant, k) + 1  # the published extra term
        idcg = np.cumsum(discounts)[ideal_terms - 1]
    else:
        idcg = judged.ideal_gains[:, :k] @ discounts[:k]
    return dcg / idcg


def mrr_array(judged: Judgements, k: int) -> np.ndarray:
    """1 / rank of the first relevant item within the top k, else 0."""
    _check_depth(judged, k)
    top = judged.hits[:, :k]
    first_rank = top.argmax(axis=1) + 1
    return np.where(top.any(axis=1), 1.0 / first_rank, 0.0)


def average_precision_array(judged: Judgements, k: int, denominator: APDenominator = "relevant") -> np.ndarray:
    """Σ_{i≤k} hit_i · Precision@i divided by |relevant|, min(k, |relevant|) or k (`denominator`)."""
    _check_depth(judged, k)
    top = judged.hits[:, :k].astype(np.float64)
    precision_at_rank = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    total = (precision_at_rank * top).sum(axis=1)
    if denominator == "relevant":
        return total / judged.n_relevant
    if denominator == "min_k_relevant":
        return total / np.minimum(judged.n_relevant, k)
    if denominator == "k":
        return total / k
    raise ValueError(f"AP denominator must be 'relevant', 'min_k_relevant' or 'k', got {denominator!r}")


# ---- scalar definitions for one user ------------------------------------------------------------------------

def _judge_one(ranked: Sequence[str], relevant: Collection[str], k: int,
               gains: Mapping[str, float] | None = None) -> Judgements:
    return judge([list(ranked)], [relevant], k, None if gains is None else [gains])


def hit_rate_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1.0 if any of the top k of `ranked` is in `relevant`, else 0.0."""
    return float(hit_rate_array(_judge_one(ranked, relevant, k), k)[0])


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int,
                denominator: RecallDenominator = "relevant") -> float:
    """Hits in the top k divided by |relevant| (default) or min(k, |relevant|)."""
    return float(recall_array(_judge_one(ranked, relevant, k), k, denominator)[0])


def precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Hits in the top k divided by k (also when `ranked` holds fewer than k items)."""
    return float(precision_array(_judge_one(ranked, relevant, k), k)[0])


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int,
              gains: Mapping[str, float] | None = None, published_olga_idcg: bool = False) -> float:
    """NDCG@k: binary gain by default; `gains` (relevant id -> gain > 0) gives linear graded NDCG.

    `published_olga_idcg=True` reproduces the published OLGA code's flawed IDCG (one extra ideal term); see
    `ndcg_array`.
    """
    return float(ndcg_array(_judge_one(ranked, relevant, k, gains), k, published_olga_idcg)[0])


def mrr_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 / rank (1-based) of the first relevant item within the top k, else 0.0."""
    return float(mrr_array(_judge_one(ranked, relevant, k), k)[0])


def average_precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int,
                           denominator: APDenominator = "relevant") -> float:
    """AP@k = Σ_{i≤k} hit_i · Precision@i / |relevant| (default), min(k, |relevant|) or k."""
    return float(average_precision_array(_judge_one(ranked, relevant, k), k, denominator)[0])


METRIC_FUNCTIONS: dict[str, Callable[..., float]] = {
    "hit_rate": hit_rate_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "map": average_precision_at_k,
}


def per_user_metrics(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Collection[str]],
    ks: Sequence[int],
    metrics: Sequence[str] = METRIC_NAMES,
    *,
    recall_denominator: RecallDenominator = "relevant",
    map_denominator: APDenominator = "relevant",
    ndcg_gains: Mapping[str, Mapping[str, float]] | None = None,
    published_olga_idcg: bool = False,
) -> pl.DataFrame:
    """One row per evaluated user × metric × k: columns user_id str, metric str, k int32, value float64.

    The evaluated users are the keys of `relevant` with a non-empty set (users with an empty set are skipped);
    a user absent from `rankings` scores 0 on every metric; users only in `rankings` are ignored. The variant
    parameters go to the metric they name: `recall_denominator` to recall, `map_denominator` to map,
    `ndcg_gains` (user -> relevant id -> gain) and `published_olga_idcg` to ndcg. Rows are sorted by
    user_id, metric, k.
    """
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRIC_NAMES)}")
    if not ks:
        raise ValueError("ks must hold at least one cutoff")
    for k in ks:
        _check_k(k)
    users = [user for user, rel in relevant.items() if len(rel) > 0]
    if ndcg_gains is not None:
        missing = [user for user in users if user not in ndcg_gains]
        if missing:
            raise ValueError(f"ndcg_gains has no gains for user {missing[0]!r}")
    judged = judge(
        [rankings.get(user, ()) for user in users],
        [relevant[user] for user in users],
        max(ks),
        None if ndcg_gains is None else [ndcg_gains[user] for user in users],
    )
    scorers: dict[str, Callable[[int], np.ndarray]] = {
        "hit_rate": lambda k: hit_rate_array(judged, k),
        "recall": lambda k: recall_array(judged, k, recall_denominator),
        "precision": lambda k: precision_array(judged, k),
        "ndcg": lambda k: ndcg_array(judged, k, published_olga_idcg),
        "mrr": lambda k: mrr_array(judged, k),
        "map": lambda k: average_precision_array(judged, k, map_denominator),
    }
    blocks = [
        pl.DataFrame({
            "user_id": pl.Series(users, dtype=pl.String),
            "metric": pl.Series([metric] * len(users), dtype=pl.String),
            "k": pl.Series([int(k)] * len(users), dtype=pl.Int32),
            "value": pl.Series(scorers[metric](int(k)), dtype=pl.Float64),
        })
        for metric in metrics
        for k in ks
    ]
    return pl.concat(blocks).sort(["user_id", "metric", "k"])
