"""The artist-graph adapters: OLGA files (tiny fixture in the real format, and the real release when present),
the contract-table converter with its seeded split, and node features."""
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from catalog.io import ItemVectors
from catalog.olga import (
    ArtistGraph,
    artist_features_from_tracks,
    graph_from_tables,
    load_olga,
    random_features,
    resolve_features,
)

REAL_OLGA = Path(__file__).resolve().parents[1].parent / "shared/data/olga"


def write_olga_fixture(folder: Path) -> None:
    """6 artists, edges 0-1, 0-3, 2-4, 4-5 (upper triangle), train {0,1,2}, val {3}, test {4,5}, clap features."""
    rows, cols = np.array([0, 0, 2, 4]), np.array([1, 3, 4, 5])
    sp.save_npz(folder / "artist_connections.npz", sp.csr_matrix((np.ones(4, bool), (rows, cols)), shape=(6, 6)))
    for name, nodes in {"train": [0, 1, 2], "val": [3], "test": [4, 5]}.items():
        mask = sp.csr_matrix((np.ones(len(nodes)), (np.zeros(len(nodes), int), nodes)), shape=(1, 6))
        sp.save_npz(folder / f"{name}_mask.npz", mask)
    np.save(folder / "clap.npy", np.arange(12, dtype=np.float64).reshape(6, 2))


def test_load_olga_fixture(tmp_path):
    write_olga_fixture(tmp_path)
    graph = load_olga(tmp_path)
    assert graph.artist_ids == ["0", "1", "2", "3", "4", "5"]
    assert graph.edges.tolist() == [[0, 0, 2, 4], [1, 3, 4, 5]]
    assert graph.train.tolist() == [0, 1, 2] and graph.val.tolist() == [3] and graph.test.tolist() == [4, 5]
    assert list(graph.features) == ["clap"]
    assert graph.features["clap"].dtype == np.float32 and graph.features["clap"][5].tolist() == [10.0, 11.0]


def test_load_olga_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="artist_connections.npz"):
        load_olga(tmp_path)
    write_olga_fixture(tmp_path)
    sp.save_npz(tmp_path / "val_mask.npz", sp.csr_matrix((1, 7)))
    with pytest.raises(ValueError, match="expected \\(1, 6\\)"):
        load_olga(tmp_path)


def test_graph_validation():
    split = {"train": np.array([0]), "val": np.array([1]), "test": np.array([2])}
    with pytest.raises(ValueError, match="src < dst"):
        ArtistGraph(["a", "b", "c"], np.array([[1], [0]]), **split)
    with pytest.raises(ValueError, match="partition"):
        ArtistGraph(["a", "b", "c"], np.zeros((2, 0), np.int64), np.array([0]), np.array([1]), np.array([1]))


def test_graph_from_tables_dedupes_and_splits_reproducibly():
    artists = pl.DataFrame({"artist_id": [f"a{i}" for i in range(20)], "name": [f"n{i}" for i in range(20)]})
    edges = pl.DataFrame({"src": ["a0", "a1", "a5"], "dst": ["a1", "a0", "a9"]})
    graph = graph_from_tables(artists, edges, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert graph.edges.tolist() == [[0, 5], [1, 9]]  # (a0,a1) and (a1,a0) are one undirected edge
    assert (len(graph.train), len(graph.val), len(graph.test)) == (14, 2, 4)
    again = graph_from_tables(artists, edges, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert np.array_equal(graph.test, again.test)
    other = graph_from_tables(artists, edges, val_fraction=0.1, test_fraction=0.2, seed=4)
    assert not np.array_equal(graph.test, other.test)
    with pytest.raises(ValueError, match="unknown artist.*'zz'"):
        graph_from_tables(artists, pl.DataFrame({"src": ["a0"], "dst": ["zz"]}))
    with pytest.raises(ValueError, match="self-loop"):
        graph_from_tables(artists, pl.DataFrame({"src": ["a0"], "dst": ["a0"]}))


def test_artist_features_from_tracks_pools_and_flags_artists_without_tracks():
    tracks = pl.DataFrame({"track_id": ["t1", "t2", "t3", "t4"], "artist_id": ["x", "x", "y", "z"]})
    vectors = ItemVectors(["t1", "t2", "t3"], np.array([[1, 2], [3, 6], [5, 0]], np.float32))  # t4 not embedded
    mean, has = artist_features_from_tracks(["x", "y", "z", "w"], tracks, vectors)
    assert mean.tolist() == [[2, 4], [5, 0], [0, 0], [0, 0]]
    assert has.tolist() == [True, True, False, False]
    top, _ = artist_features_from_tracks(["x", "y", "z", "w"], tracks, vectors, pooling="max")
    assert top.tolist() == [[3, 6], [5, 0], [0, 0], [0, 0]]


def test_resolve_features_random_and_concatenation(tmp_path):
    write_olga_fixture(tmp_path)
    graph = load_olga(tmp_path)
    assert np.array_equal(resolve_features(graph, "random", seed=1), random_features(6, seed=1))
    assert resolve_features(graph, "random").shape == (6, 256)
    both = resolve_features(graph, "clap+random")
    assert both.shape == (6, 258) and both[5, :2].tolist() == [10.0, 11.0]
    with pytest.raises(KeyError, match="acousticbrainz"):
        resolve_features(graph, "acousticbrainz")


@pytest.mark.skipif(not REAL_OLGA.exists(), reason=f"real OLGA data not found at {REAL_OLGA}")
def test_real_olga_counts():
    graph = load_olga(REAL_OLGA)
    assert graph.num_nodes == 17_673 and graph.edges.shape == (2, 101_029)
    assert (len(graph.train), len(graph.val), len(graph.test)) == (14_139, 1_767, 1_767)
