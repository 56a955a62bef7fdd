"""artist_gnn and the OLGA protocol: NDCG on hand-made rankings (checked against evaluation.metrics), the
edge rule (no test–test edge ever reaches message passing or training), learning on a planted graph, save/load."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from catalog.olga import ArtistGraph, random_features, seeded_node_split
from evaluation.artist_similarity import (
    batched_ndcg,
    both_directions,
    evaluate_split,
    ground_truth_edges,
    message_passing_edges,
)
from evaluation.metrics import ndcg_at_k
from recommenders.artist_gnn import (
    ArtistGNN,
    ArtistGNNConfig,
    TrainedArtistGNN,
    _MeanAggregate,
    adjacency,
    gathered_triplet_loss,
    train_artist_gnn,
)

torch.set_num_threads(1)


def planted_graph(communities: int = 10, size: int = 40, p_in: float = 0.2, p_out: float = 0.002,
                  seed: int = 0) -> ArtistGraph:
    """A stochastic block model: dense inside communities, sparse across; 60/20/20 seeded node split."""
    rng = np.random.default_rng(seed)
    n = communities * size
    block = np.arange(n) // size
    i, j = np.triu_indices(n, k=1)
    keep = rng.random(len(i)) < np.where(block[i] == block[j], p_in, p_out)
    split = seeded_node_split(n, 0.2, 0.2, seed)
    return ArtistGraph([f"a{v}" for v in range(n)], np.stack([i[keep], j[keep]]).astype(np.int64), **split)


def test_ndcg_lone_hit_standard_and_published():
    distances = torch.tensor([[0.1, 0.5, 0.9]])
    relevant = torch.tensor([[True, False, False]])
    assert batched_ndcg(distances, relevant, k=200).item() == pytest.approx(1.0)
    published = batched_ndcg(distances, relevant, k=200, published_olga_idcg=True).item()
    assert published == pytest.approx(1 / (1 + 1 / math.log2(3))) and round(published, 3) == 0.613


def test_ndcg_hand_computed_two_hits_and_cutoff():
    # ranking by distance: c3, c0, c2, c1; relevant c0 and c1 -> hits at ranks 2 and 4
    distances = torch.tensor([[0.2, 0.9, 0.5, 0.1]])
    relevant = torch.tensor([[True, True, False, False]])
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert batched_ndcg(distances, relevant, k=4).item() == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    assert batched_ndcg(distances, relevant, k=2).item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    extra = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert batched_ndcg(distances, relevant, k=4, published_olga_idcg=True).item() == pytest.approx(dcg / extra)


def test_ndcg_ties_go_to_lower_index_and_inf_is_excluded():
    distances = torch.tensor([[0.5, 0.5, float("inf")]])
    assert batched_ndcg(distances, torch.tensor([[False, True, False]]), k=1).item() == 0.0
    assert batched_ndcg(distances, torch.tensor([[True, False, False]]), k=1).item() == 1.0
    assert batched_ndcg(distances, torch.tensor([[False, False, True]]), k=3).item() == 0.0


@pytest.mark.parametrize("published", [False, True])
def test_batched_ndcg_matches_metrics_module(published):
    rng = np.random.default_rng(7)
    distances = rng.random((40, 30))  # tie-free
    relevant = rng.random((40, 30)) < 0.15
    relevant[:, 0] = True  # every query has a relevant candidate
    ours = batched_ndcg(torch.tensor(distances), torch.tensor(relevant), k=10, published_olga_idcg=published)
    for row in range(40):
        ranked = [str(c) for c in np.argsort(distances[row])]
        reference = ndcg_at_k(ranked, {str(c) for c in np.flatnonzero(relevant[row])}, 10,
                              published_olga_idcg=published)
        assert ours[row].item() == pytest.approx(reference, abs=1e-12)


def test_evaluate_split_on_hand_made_graph():
    # test nodes 3, 4, 5 with test-test edges 3-4 only; node 5 has no relevant neighbour and is not a query
    graph = ArtistGraph([str(i) for i in range(6)], np.array([[0, 1, 3], [3, 2, 4]]),
                        train=np.array([0, 1]), val=np.array([2]), test=np.array([3, 4, 5]))
    embeddings = torch.tensor([[0.0], [0.0], [0.0], [0.0], [1.0], [0.5]])
    score = evaluate_split(embeddings, graph, "test")
    # query 3: ranking 5 (0.5), 4 (1.0) -> hit at rank 2; query 4: ranking 5, 3 -> hit at rank 2
    assert score.n == 2
    assert score.ndcg == pytest.approx(1 / math.log2(3))
    assert score.ndcg_published == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_edge_rule_never_passes_messages_over_evaluated_or_test_edges():
    graph = planted_graph(p_out=0.05)
    code = np.zeros(graph.num_nodes, int)
    code[graph.val], code[graph.test] = 1, 2
    kinds = {s: {tuple(sorted(k)) for k in zip(code[e[0]], code[e[1]])}
             for s in ("train", "val", "test") for e in [message_passing_edges(graph, s)]}
    assert kinds["train"] == {(0, 0)}
    assert kinds["val"] == {(0, 0), (0, 1)}  # no test node at all, no val-val edge
    assert kinds["test"] == {(0, 0), (0, 1), (1, 1), (0, 2), (1, 2)}  # everything but test-test
    for split, wanted in (("val", 1), ("test", 2)):
        truth = ground_truth_edges(graph, split)
        assert truth.shape[1] > 0 and set(code[truth.ravel()]) == {wanted}
    assert message_passing_edges(graph, "test").shape[1] + truth.shape[1] == graph.edges.shape[1]


def test_training_and_validation_ignore_test_edges():
    """Replacing every test-test edge changes neither the trained weights, the chosen epoch, nor val scores."""
    graph = planted_graph()
    code = np.zeros(graph.num_nodes, int)
    code[graph.test] = 2
    not_test_test = (code[graph.edges[0]] != 2) | (code[graph.edges[1]] != 2)
    t = graph.test
    rewired = np.stack([t[:-1], t[1:]])  # a path through the test nodes instead of their real edges
    edges = np.unique(np.concatenate([graph.edges[:, not_test_test], rewired], axis=1), axis=1)
    other = ArtistGraph(graph.artist_ids, edges, graph.train, graph.val, graph.test)
    features = random_features(graph.num_nodes, 16, seed=0)
    config = ArtistGNNConfig(16, layers=2, hidden=16, out_dim=8, epochs=6)
    first, second = (train_artist_gnn(g, features, config, log=None) for g in (graph, other))
    assert first.best_epoch == second.best_epoch and first.best_val == second.best_val
    for name, weight in first.model.state_dict().items():
        assert torch.equal(weight, second.model.state_dict()[name]), name


def test_csr_adjacency_matches_edge_index():
    graph = planted_graph()
    model = ArtistGNN(16, layers=2, hidden=16, out_dim=8).eval()
    x = torch.randn(graph.num_nodes, 16)
    via_csr = model(x, adjacency(graph.edges, graph.num_nodes))
    via_edges = model(x, both_directions(graph.edges))
    assert torch.allclose(via_csr, via_edges, atol=1e-5)


def test_model_learns_planted_communities_and_round_trips(tmp_path, capsys):
    graph = planted_graph()
    features = random_features(graph.num_nodes, 32, seed=1)
    config = ArtistGNNConfig(32, layers=2, hidden=32, out_dim=16, lr=1e-2, epochs=50, seed=0)
    trained = train_artist_gnn(graph, features, config)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 50 and "loss" in lines[0] and "val NDCG@200" in lines[0] and "s/epoch" in lines[0]
    assert trained.best_val.ndcg == max(r["val_ndcg200"] for r in trained.history)
    untrained = TrainedArtistGNN(config, ArtistGNN(32, 2, 32, 16), 0, trained.best_val, 0.0, [])
    no_layers = train_artist_gnn(graph, features, ArtistGNNConfig(32, layers=0, hidden=32, out_dim=16, lr=1e-2,
                                                                  epochs=50), log=None)
    # k=200 exceeds the 80 test artists, so even a random ranking scores about 0.25 here
    test = trained.evaluate(features, graph, "test").ndcg
    assert test > untrained.evaluate(features, graph, "test").ndcg + 0.08
    assert test > no_layers.evaluate(features, graph, "test").ndcg + 0.1
    assert test > 0.35

    loaded = TrainedArtistGNN.load(trained.save(tmp_path / "model"))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert loaded.config == config and loaded.best_epoch == trained.best_epoch
    embeddings = loaded.embed(features, graph, "test")
    assert torch.equal(embeddings, trained.embed(features, graph, "test"))
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(graph.num_nodes), atol=1e-5)  # normalize=True


def test_training_is_seeded():
    graph = planted_graph()
    features = random_features(graph.num_nodes, 16, seed=0)
    config = ArtistGNNConfig(16, layers=1, hidden=16, out_dim=8, epochs=3, seed=5)
    a, b = (train_artist_gnn(graph, features, config, log=None) for _ in range(2))
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


def test_bfloat16_training_learns_planted_communities_like_float32():
    graph = planted_graph()
    features = random_features(graph.num_nodes, 32, seed=1)
    scores = {}
    for precision in ("float32", "bfloat16"):
        config = ArtistGNNConfig(32, layers=2, hidden=32, out_dim=16, lr=1e-2, epochs=50, seed=0,
                                 precision=precision)
        scores[precision] = train_artist_gnn(graph, features, config, log=None).evaluate(features, graph, "test").ndcg
    no_layers = train_artist_gnn(graph, features, ArtistGNNConfig(32, layers=0, hidden=32, out_dim=16, lr=1e-2,
                                                                  epochs=50), log=None)
    assert scores["bfloat16"] > no_layers.evaluate(features, graph, "test").ndcg + 0.1
    assert abs(scores["bfloat16"] - scores["float32"]) < 0.05


def test_mean_aggregation_under_bfloat16_autocast_keeps_dtype_and_gradient():
    graph = planted_graph()
    operator = adjacency(graph.edges, graph.num_nodes)
    x = torch.randn(graph.num_nodes, 8)
    weight = torch.randn(8, 8, requires_grad=True)
    grads = {}
    for enabled in (False, True):
        weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            out = _MeanAggregate.apply(x @ weight, operator)
        assert out.dtype == (torch.bfloat16 if enabled else torch.float32)
        out.float().square().sum().backward()
        grads[enabled] = weight.grad.clone()
    assert torch.allclose(grads[True], grads[False], rtol=0.05, atol=0.05 * grads[False].abs().max().item())


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision 'fp8'"):
        ArtistGNNConfig(16, precision="fp8")


def test_gathered_triplet_loss_matches_torch_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(50, 6, generator=generator), dim=1)
    anchor, positive, negative = (torch.randint(50, (400,), generator=generator) for _ in range(3))
    ours_z, torch_z = z.clone().requires_grad_(), z.clone().requires_grad_()
    ours = gathered_triplet_loss(ours_z, anchor, positive, negative, margin=0.2)
    expected = F.triplet_margin_loss(torch_z[anchor], torch_z[positive], torch_z[negative], margin=0.2, p=2)
    (3.0 * ours).backward()
    (3.0 * expected).backward()
    assert 0.0 < expected.item() and torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(ours_z.grad, torch_z.grad, atol=1e-6)
    assert (ours_z.grad != 0).any(dim=1).sum() > 10  # some triplets are active, some not
