"""Similar artists for serving: GraphSAGE on the whole artist graph gives artists it never trained on
neighbours from their planted community, which its no-message-passing twin (0 layers, the same random
features) cannot; the layer count comes from the study."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from catalog.olga import random_features
from recommenders.similar_artists import best_layers, serving_graph, similar_artists


def planted_tables(communities: int = 6, size: int = 30, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`artists` and `artist_edges` tables of a stochastic block model: dense inside communities (p .25),
    sparse across (p .004). Artist `c<community>_<i>`."""
    rng = np.random.default_rng(seed)
    ids = [f"c{c}_{i}" for c in range(communities) for i in range(size)]
    block = np.arange(len(ids)) // size
    i, j = np.triu_indices(len(ids), k=1)
    keep = rng.random(len(i)) < np.where(block[i] == block[j], 0.25, 0.004)
    artists = pl.DataFrame({"artist_id": ids, "name": [f"Artist {a}" for a in ids]})
    edges = pl.DataFrame({"src": [ids[a] for a in i[keep]], "dst": [ids[b] for b in j[keep]]})
    return artists, edges


def same_community_share(lists: dict[str, list[tuple[str, float]]]) -> float:
    pairs = [(a, b) for a, hits in lists.items() for b, _ in hits]
    return float(np.mean([a.split("_")[0] == b.split("_")[0] for a, b in pairs]))


def test_neighbours_share_the_planted_community_and_beat_the_no_layers_twin():
    graph = serving_graph(*planted_tables())
    assert len(graph.test) == 0 and len(graph.val) == 18  # 10% held out for early stopping, no test artists
    features = random_features(graph.num_nodes, 32, seed=1)
    lists = similar_artists(graph, features, layers=2, k=5)
    assert set(lists) == set(graph.artist_ids)
    assert all(len(hits) == 5 and artist not in dict(hits) for artist, hits in lists.items())
    assert all([s for _, s in hits] == sorted((s for _, s in hits), reverse=True) for hits in lists.values())
    twin = similar_artists(graph, features, layers=0, k=5)
    unseen = {graph.artist_ids[i] for i in graph.val}  # never trained on: their neighbours come from the graph

    def held_out(found: dict) -> dict:
        return {artist: hits for artist, hits in found.items() if artist in unseen}

    assert same_community_share(held_out(lists)) > 0.7  # chance: 29 of 179 others, 0.16
    assert same_community_share(held_out(twin)) < 0.35


def test_best_layers_reads_the_study_and_names_missing_features():
    sweep = pl.DataFrame({"features": ["a", "a", "a", "b"], "layers": [0, 1, 2, 0], "ndcg200": [.2, .4, .4, .9]})
    assert best_layers(sweep, "a") == 1  # tie between 1 and 2 layers: fewer
    with pytest.raises(ValueError, match=r"no rows for features 'c'; it has \['a', 'b'\]"):
        best_layers(sweep, "c")
