"""Similar artists for serving: a GraphSAGE model (`recommenders.artist_gnn`) trained on the whole artist graph
and each artist's nearest artists by cosine over its embeddings.

The artist study measures how good such a model is on held-out artists; serving trains one more on every
artist but a seeded validation share (kept for early stopping), then embeds every artist passing messages over
every edge, so an artist with no edge yet (a new one) still gets neighbours from its audio features.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from catalog.olga import ArtistGraph, graph_from_tables
from recommenders.artist_gnn import ArtistGNNConfig, train_artist_gnn
from recommenders.index import VectorIndex, nearest

SERVING_VALIDATION = 0.1  # share of artists held out for early stopping
EPOCHS = 60  # full-batch steps
EVAL_EVERY = 5


def best_layers(sweep: pl.DataFrame, features: str) -> int:
    """The SAGE layer count with the best NDCG@200 for `features` in the artist study's table (columns
    features, layers, ndcg200); ties go to fewer layers."""
    rows = sweep.filter(pl.col("features") == features)
    if rows.is_empty():
        raise ValueError(f"the artist study has no rows for features {features!r}; "
                         f"it has {sorted(sweep['features'].unique().to_list())}")
    return int(rows.sort(["ndcg200", "layers"], descending=[True, False])["layers"][0])


def serving_graph(artists: pl.DataFrame, artist_edges: pl.DataFrame, seed: int = 0) -> ArtistGraph:
    """The artist graph with a validation share for early stopping and no test artists."""
    return graph_from_tables(artists, artist_edges, val_fraction=SERVING_VALIDATION, test_fraction=0.0, seed=seed)


def similar_artists(graph: ArtistGraph, features: np.ndarray, layers: int, k: int, seed: int = 0,
                    epochs: int = EPOCHS) -> dict[str, list[tuple[str, float]]]:
    """Each artist's `k` most similar artists (itself excluded) with cosine scores, best first.

    features: float32 (n artists, d) node features in `graph.artist_ids` order."""
    config = ArtistGNNConfig(features.shape[1], layers=layers, epochs=epochs, eval_every=EVAL_EVERY, lr=5e-3,
                             seed=seed)
    trained = train_artist_gnn(graph, features, config, log=None)
    embeddings = trained.embed(features, graph, "test").numpy()  # "test": every edge passes messages
    return nearest(graph.artist_ids, embeddings, VectorIndex(graph.artist_ids, embeddings, normalize=True), k)
