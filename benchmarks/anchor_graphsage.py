"""GraphSAGE on OLGA: seconds per full-batch training step (4 SAGE layers, hidden 256, out 100, random 256-d node
features, triplet loss, AdamW lr 5e-3), validation excluded.

Ours: `recommenders.artist_gnn.train_artist_gnn` as the pipeline calls it (validation only at the last step, whose
time is dropped), once in float32 and once with `precision="bfloat16"` (the forward under autocast). Anchor: the
same model written the plain PyG way, in float32: `torch_geometric.nn.SAGEConv(aggr="mean")` called on the
edge_index (scatter-mean), the triplets gathered with `z[idx]`; same layers, initial weights (same seed and module
order), features, negatives sampler and loss. torch_geometric is a project dependency, so the
anchor runs from the main .venv. Both use 2 torch threads. The row's quality column gives each model's test
NDCG@200 (standard IDCG) after the same number of steps.

    .venv/bin/python benchmarks/anchors.py --only graphsage [--quick]
"""
from __future__ import annotations

import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import subgraph

from benchmarks.anchors import device_label
from catalog.olga import ArtistGraph, load_olga, resolve_features
from evaluation.artist_similarity import DEFAULT_K, both_directions, evaluate_split, message_passing_edges
from recommenders.artist_gnn import PRECISIONS, ArtistGNNConfig, train_artist_gnn

OLGA = Path(__file__).resolve().parents[2] / "shared" / "data" / "olga"
LAYERS, LR, SEED, THREADS = 4, 5e-3, 0, 2


class PlainSAGE(nn.Module):
    """The anchor model, float (n, in_dim) + edge_index (2, E) -> unit-norm float (n, out_dim); modules created in
    the same order as `ArtistGNN`'s, so the same seed gives the same initial weights."""

    def __init__(self, in_dim: int, layers: int, hidden: int = 256, out_dim: int = 100):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.convs = nn.ModuleList(SAGEConv(hidden, hidden, aggr="mean") for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, edge_index)))
        return F.normalize(self.head(x), dim=-1)


def train_plain(graph: ArtistGraph, features: np.ndarray, steps: int) -> tuple[PlainSAGE, list[float], list[float]]:
    """The anchor's training loop; returns the model, the wall and the CPU (process) seconds of each step."""
    torch.manual_seed(SEED)
    sampler = torch.Generator().manual_seed(SEED)
    train_nodes = torch.from_numpy(graph.train)
    edge_index, _ = subgraph(train_nodes, both_directions(message_passing_edges(graph, "train")),
                             relabel_nodes=True, num_nodes=graph.num_nodes)
    x = torch.as_tensor(features)[train_nodes]
    model = PlainSAGE(features.shape[1], LAYERS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    anchor, positive = edge_index
    seconds, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.train()
        optimizer.zero_grad()
        z = model(x, edge_index)
        negative = torch.randint(len(train_nodes), anchor.shape, generator=sampler)
        F.triplet_margin_loss(z[anchor], z[positive], z[negative], margin=0.2, p=2).backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return model.eval(), seconds, cpu


def train_ours(graph: ArtistGraph, features: np.ndarray, steps: int, precision: str):
    """`train_artist_gnn` as the pipeline calls it; returns the trained model, the wall and the CPU seconds of each
    step but the last (which validates)."""
    config = ArtistGNNConfig(features.shape[1], layers=LAYERS, epochs=steps, eval_every=steps + 1, lr=LR, seed=SEED,
                             precision=precision)
    clock = [time.process_time()]  # CPU clock at the start and at the end of each epoch (the log call)
    trained = train_artist_gnn(graph, features, config, log=lambda row: clock.append(time.process_time()))
    seconds = [row["seconds"] for row in trained.history if row["val_ndcg200"] is None]
    return trained, seconds, list(np.diff(clock))[: len(seconds)]


def measure(quick: bool) -> list[dict]:
    """Rows per precision of ours (float32, bfloat16 autocast): median wall and CPU seconds per training step
    (first step dropped as warm-up), against plain PyG in float32."""
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    torch.set_num_threads(THREADS)
    steps = 6 if quick else 20
    graph = load_olga(OLGA)
    features = resolve_features(graph, "random", seed=SEED)
    load_before = os.getloadavg()[0]
    ours = {precision: train_ours(graph, features, steps, precision) for precision in PRECISIONS}
    anchor_model, anchor_seconds, anchor_cpu = train_plain(graph, features, steps)
    load_after = os.getloadavg()[0]
    with torch.no_grad():
        test_graph = both_directions(message_passing_edges(graph, "test"))
        anchor_test = evaluate_split(anchor_model(torch.as_tensor(features), test_graph), graph, "test",
                                     DEFAULT_K).ndcg
    name = f"GraphSAGE OLGA train step ({LAYERS} layers, {graph.num_nodes} artists)"
    device = f"{device_label()}, load avg {load_before:.1f}-{load_after:.1f}"
    note = ("anchor: PyG SAGEConv(mean) on edge_index + z[idx] triplets in float32, main .venv (torch_geometric is "
            f"a dependency); median of {steps - 1} steps after a warm-up, validation excluded")
    rows = []
    for precision, (trained, seconds, cpu) in ours.items():
        ours_test = trained.evaluate(features, graph, "test").ndcg
        rows += [{
            "name": f"{name}, ours {precision}, wall", "ours": statistics.median(seconds[1:]),
            "anchor": statistics.median(anchor_seconds[1:]), "unit": "s/step", "device": device,
            "quality": f"test NDCG@200 after {steps} steps ours {ours_test:.3f} / anchor {anchor_test:.3f}",
            "note": f"{note}; goal ours <= 0.6 s",
        }, {
            "name": f"{name}, ours {precision}, CPU time (user+sys, all threads)",
            "ours": float(statistics.median(cpu[1:])), "anchor": statistics.median(anchor_cpu[1:]),
            "unit": "s/step", "device": device,
            "note": "process CPU time per step, less sensitive than wall time to other load on the machine",
        }]
    return rows


if __name__ == "__main__":
    print(measure(quick=True))
