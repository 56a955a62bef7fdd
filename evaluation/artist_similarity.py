"""The OLGA artist-similarity protocol (arXiv 2409.09026, after Korzeniowski et al. 2021): which edges a model may
pass messages over, which edges are ground truth, and NDCG@k of the resulting rankings.

Edge rule. Let T, V, S be the train, validation and test artists; an edge's "kind" is the pair of splits of its
ends. The edges whose two ends are both in the evaluated split are the ground truth and are NEVER passed as
messages when that split is evaluated:
  - training ("train"):  message passing and triplets use T–T edges only;
  - validation ("val"):  message passing over T–T and T–V edges (graph of T ∪ V minus the V–V edges);
                         ground truth = V–V edges. No test artist or edge takes part;
  - test ("test"):       message passing over every edge except S–S ones (T–T, T–V, V–V, T–S, V–S);
                         ground truth = S–S edges.
This is the published code's rule (its validation graph = train edges + train–val edges; its test graph adds
val–val, train–test and val–test edges). It models an artist newly added to a catalog: its links to known
artists are known, its links to other new artists are what we predict. Hence no test–test edge is ever used for
message passing or training, and model selection on validation never sees a test artist.

Ranking. For each artist of the evaluated split with at least one relevant neighbour (its neighbours inside the
same split in the full graph), the other artists of that split are ranked by Euclidean distance of their
embeddings, nearest first (self dropped; ties broken by lower node index), and NDCG@k with binary gain is
averaged over those artists. `published_olga_idcg=True` reproduces the published code's IDCG, which sums
min(|relevant|, k) + 1 ideal terms (a lone hit at rank 1 then scores 1 / (1 + 1/log2 3) = 0.613).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from catalog.olga import SPLITS, ArtistGraph

DEFAULT_K = 200


def _membership(graph: ArtistGraph) -> np.ndarray:
    """int8 (n,) split code of each node: 0 train, 1 val, 2 test."""
    code = np.empty(graph.num_nodes, np.int8)
    for i, name in enumerate(SPLITS):
        code[graph.split(name)] = i
    return code


def message_passing_edges(graph: ArtistGraph, split: str) -> np.ndarray:
    """The undirected edges (2, E), each once, a model may pass messages over when `split` is trained on
    ("train") or evaluated ("val", "test"); the rule is in the module docstring."""
    code = _membership(graph)
    a, b = code[graph.edges[0]], code[graph.edges[1]]
    if split == "train":
        keep = (a == 0) & (b == 0)
    elif split == "val":
        keep = (a <= 1) & (b <= 1) & ~((a == 1) & (b == 1))
    elif split == "test":
        keep = ~((a == 2) & (b == 2))
    else:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return graph.edges[:, keep]


def ground_truth_edges(graph: ArtistGraph, split: str) -> np.ndarray:
    """The undirected edges (2, E) with both ends in `split`: the relevance judgements when evaluating it."""
    code = _membership(graph)
    wanted = SPLITS.index(split)
    return graph.edges[:, (code[graph.edges[0]] == wanted) & (code[graph.edges[1]] == wanted)]


def both_directions(edges: np.ndarray) -> torch.Tensor:
    """(2, E) undirected edges -> int64 tensor (2, 2E) holding each edge in both directions (PyG edge_index)."""
    both = np.concatenate([edges, edges[::-1]], axis=1)
    return torch.from_numpy(np.ascontiguousarray(both)).long()


def _discounts(k: int) -> torch.Tensor:
    """float64 (k + 1,): 1 / log2(rank + 1) for ranks 1..k+1."""
    return 1.0 / torch.log2(torch.arange(2, k + 3, dtype=torch.float64))


def batched_ndcg(
    distances: torch.Tensor, relevant: torch.Tensor, k: int, published_olga_idcg: bool = False
) -> torch.Tensor:
    """NDCG@k with binary gain for each row of a distance matrix, nearest first.

    distances: float (q, m) query-to-candidate distances; use +inf for candidates to exclude (e.g. self).
    relevant: bool (q, m) relevance of each candidate. Ties in distance go to the lower candidate index.
    Returns float64 (q,); a row with no relevant candidate scores 0 (callers drop such rows).
    """
    k_eff = min(k, distances.shape[1])
    order = torch.sort(distances, dim=1, stable=True).indices[:, :k_eff]
    hits = torch.gather(relevant, 1, order).double()
    finite = torch.gather(torch.isfinite(distances), 1, order)
    discount = _discounts(k)
    dcg = (hits * finite * discount[:k_eff]).sum(dim=1)
    ideal_terms = relevant.sum(dim=1).clamp(max=k) + int(published_olga_idcg)
    idcg = torch.cumsum(discount, 0)[(ideal_terms - 1).clamp(min=0)]
    return torch.where(relevant.any(dim=1), dcg / idcg, torch.zeros_like(dcg))


@dataclass(frozen=True)
class SplitScore:
    """Mean NDCG@k over the `n` artists of a split with at least one relevant neighbour, in both IDCG variants."""

    ndcg: float
    ndcg_published: float
    n: int


def evaluate_split(embeddings: torch.Tensor, graph: ArtistGraph, split: str, k: int = DEFAULT_K) -> SplitScore:
    """Score `embeddings` (float (n_nodes, d), computed with `message_passing_edges(graph, split)`) on `split`."""
    nodes = torch.from_numpy(graph.split(split))
    local = np.full(graph.num_nodes, -1, np.int64)
    local[graph.split(split)] = np.arange(len(nodes))
    truth = ground_truth_edges(graph, split)
    relevant = torch.zeros(len(nodes), len(nodes), dtype=torch.bool)
    relevant[local[truth[0]], local[truth[1]]] = True
    relevant[local[truth[1]], local[truth[0]]] = True
    queries = relevant.any(dim=1)
    vectors = embeddings[nodes].double()
    distances = torch.cdist(vectors, vectors)
    distances.fill_diagonal_(float("inf"))
    distances, relevant = distances[queries], relevant[queries]
    scores = [batched_ndcg(distances, relevant, k, flag).mean().item() if len(distances) else 0.0
              for flag in (False, True)]
    return SplitScore(scores[0], scores[1], int(queries.sum()))
