"""`artist_gnn`: GraphSAGE artist embeddings for artist similarity (arXiv 2409.09026), trained with a triplet loss
and chosen on validation NDCG@200 under the OLGA protocol (`evaluation.artist_similarity`).

Model: Linear(in -> hidden) + BatchNorm + ReLU, then `layers` x [SAGEConv(mean) + BatchNorm + ReLU], then an MLP
head hidden -> hidden -> out (100), L2-normalised by default (the published code runs on GraphGym, whose default
`gnn.l2norm` normalises layer outputs; without it the 0.2 margin can be met by growing norms). Training is
full-batch on the subgraph of training artists: every training edge gives two triplets (each end as anchor, the
other as positive), each with a negative drawn uniformly from the training artists afresh at every step; Euclidean
triplet loss, margin 0.2; AdamW. One epoch = one full-batch step (the published code takes 16 per epoch). Every
`eval_every` epochs the validation NDCG@200 is measured and the best epoch's weights are kept.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import subgraph

from catalog.io import atomic_path, write_json
from catalog.olga import ArtistGraph, resolve_features
from evaluation.artist_similarity import DEFAULT_K, SplitScore, both_directions, evaluate_split, message_passing_edges

PRECISIONS = ("float32", "bfloat16")  # torch dtype names for the training forward


@dataclass(frozen=True)
class ArtistGNNConfig:
    """Architecture and training settings. lr/weight_decay are AdamW's; epochs = full-batch steps."""

    in_dim: int
    layers: int = 3
    hidden: int = 256
    out_dim: int = 100
    normalize: bool = True  # L2-normalise the output embeddings
    margin: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 200
    eval_every: int = 1  # validate (and possibly keep the weights) every this many epochs, and at the last one
    seed: int = 0
    precision: str = "float32"  # training forward: "float32", or "bfloat16" (autocast; fast on CPUs with AVX512-BF16
    #                             or AMX); the loss, the optimiser's weights and evaluation stay float32

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {list(PRECISIONS)}")


@dataclass(frozen=True)
class MeanAdjacency:
    """Mean aggregation over in-neighbours as two sparse CSR matrices float32 (n, n): `matrix` (row i holds
    1/deg(i) at each in-neighbour of node i, so `matrix @ x` is SAGEConv's mean aggregation) and its transpose,
    kept so that the backward pass is one more sparse-dense product (torch's own CSR `reduce="mean"` backward
    sorts the edges at every call). A node without in-neighbours aggregates to zeros, as in SAGEConv."""

    matrix: torch.Tensor
    transposed: torch.Tensor

    @classmethod
    def from_edge_index(cls, edge_index: torch.Tensor, num_nodes: int) -> "MeanAdjacency":
        """edge_index: int64 (2, E) directed edges source -> target (PyG's convention), each pair once."""
        source, target = edge_index
        weight = 1.0 / torch.bincount(target, minlength=num_nodes).clamp(min=1).float()[target]

        def csr(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), weight, (num_nodes, num_nodes),
                                          check_invariants=True)
            return coo.coalesce().to_sparse_csr()

        return cls(csr(target, source), csr(source, target))


class _MeanAggregate(torch.autograd.Function):
    """x float (n, d) -> mean of each node's in-neighbours' rows (n, d), gradient through the stored transpose."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, adjacency: MeanAdjacency) -> torch.Tensor:
        ctx.adjacency = adjacency
        with torch.autocast("cpu", enabled=False):  # no bf16 sparse kernels: aggregate in float32
            return torch.sparse.mm(adjacency.matrix, x.float()).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        with torch.autocast("cpu", enabled=False):
            return torch.sparse.mm(ctx.adjacency.transposed, grad.float().contiguous()).to(grad.dtype), None


class _GatheredTripletLoss(torch.autograd.Function):
    """F.triplet_margin_loss(z[anchor], z[positive], z[negative], margin, p=2) (mean reduction, eps 1e-6 added to
    each difference) for float32 z (n, d) and int64 index vectors (T,), with the same value and gradient. The
    gathered (T, d) differences are not kept for the backward pass: only the rows of the triplets whose hinge is
    positive, usually a small share once training has started, so the backward pass is a few small scatters."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                margin: float) -> torch.Tensor:
        eps = 1e-6
        anchors = z.index_select(0, anchor)
        to_positive = (anchors - z.index_select(0, positive)).add_(eps)
        to_negative = anchors.sub_(z.index_select(0, negative)).add_(eps)
        positive_distance, negative_distance = to_positive.norm(dim=1), to_negative.norm(dim=1)
        hinge = (positive_distance - negative_distance).add_(margin)
        active = torch.nonzero(hinge > 0).squeeze(1)
        scale = 1.0 / len(hinge)  # d mean / d hinge
        ctx.save_for_backward(
            anchor[active], positive[active], negative[active],
            to_positive[active] * (scale / positive_distance[active].clamp_min(1e-12)).unsqueeze(1),
            to_negative[active] * (scale / negative_distance[active].clamp_min(1e-12)).unsqueeze(1))
        ctx.num_nodes = z.shape[0]
        return hinge.clamp_min_(0).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        anchor, positive, negative, pull, push = ctx.saved_tensors
        pull, push = pull * grad, push * grad  # d loss / d(anchor - positive), d loss / -(anchor - negative)
        grad_z = torch.zeros(ctx.num_nodes, pull.shape[1], dtype=pull.dtype)
        grad_z.index_add_(0, anchor, pull - push)
        grad_z.index_add_(0, positive, pull, alpha=-1)
        grad_z.index_add_(0, negative, push)
        return grad_z, None, None, None, None


def gathered_triplet_loss(z: torch.Tensor, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                          margin: float) -> torch.Tensor:
    """Mean Euclidean triplet margin loss of the rows of z float32 (n, d) at int64 indices anchor, positive and
    negative (T,): the value and gradient of F.triplet_margin_loss(z[anchor], z[positive], z[negative], margin,
    p=2), in far less memory traffic (see `_GatheredTripletLoss`)."""
    return _GatheredTripletLoss.apply(z, anchor, positive, negative, margin)


def adjacency(edges: np.ndarray, num_nodes: int) -> MeanAdjacency:
    """Undirected edges (2, E), each once -> the mean-aggregation operator of the symmetric graph, the fast
    graph argument of `ArtistGNN` (same output as SAGEConv's scatter-mean over an edge_index)."""
    return MeanAdjacency.from_edge_index(both_directions(edges), num_nodes)


class ArtistGNN(nn.Module):
    """Maps node features float (n, in_dim) and a graph (a `MeanAdjacency`, or an edge_index (2, E), which takes
    PyG's own scatter path) to embeddings float (n, out_dim), of unit L2 norm when `normalize`.

    The SAGEConv modules hold the weights (so saved models keep PyG's parameter names); with a `MeanAdjacency`
    each layer is one sparse product for the aggregation and one dense product for lin_l and lin_r together:
    [mean(h) | h] @ [W_l | W_r]^T + b_l, the same arithmetic as SAGEConv(aggr="mean")."""

    def __init__(self, in_dim: int, layers: int = 3, hidden: int = 256, out_dim: int = 100, normalize: bool = True):
        super().__init__()
        self.normalize = normalize
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.convs = nn.ModuleList(SAGEConv(hidden, hidden, aggr="mean") for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor, graph: MeanAdjacency | torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        for conv, norm in zip(self.convs, self.norms):
            if isinstance(graph, MeanAdjacency):
                weight = torch.cat([conv.lin_l.weight, conv.lin_r.weight], dim=1)
                x = torch.addmm(conv.lin_l.bias, torch.cat([_MeanAggregate.apply(x, graph), x], dim=1), weight.t())
            else:
                x = conv(x, graph)
            x = F.relu(norm(x))
        x = self.head(x)
        return F.normalize(x, dim=-1) if self.normalize else x


@dataclass
class TrainedArtistGNN:
    """A trained model with the node features it was trained on, and its training record."""

    config: ArtistGNNConfig
    model: ArtistGNN
    best_epoch: int
    best_val: SplitScore
    seconds_per_epoch: float
    history: list[dict]

    @torch.no_grad()
    def embed(self, features: np.ndarray | torch.Tensor, graph: ArtistGraph, split: str) -> torch.Tensor:
        """Embeddings float32 (n, out_dim) of all artists, passing messages over the edges allowed for `split`."""
        self.model.eval()
        x = torch.as_tensor(features, dtype=torch.float32)
        return self.model(x, adjacency(message_passing_edges(graph, split), graph.num_nodes))

    def evaluate(self, features: np.ndarray | torch.Tensor, graph: ArtistGraph, split: str) -> SplitScore:
        """NDCG@200 of `split` under the OLGA protocol."""
        return evaluate_split(self.embed(features, graph, split), graph, split, DEFAULT_K)

    def save(self, folder: str | Path) -> Path:
        """Write config.json (config + best epoch) and model.safetensors (weights and BatchNorm buffers)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        record = {"config": asdict(self.config), "best_epoch": self.best_epoch, "best_val": asdict(self.best_val),
                  "seconds_per_epoch": self.seconds_per_epoch}
        write_json(record, folder / "config.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "TrainedArtistGNN":
        """Inverse of `save` (the per-epoch history is not saved)."""
        folder = Path(folder)
        record = json.loads((folder / "config.json").read_text())
        config = ArtistGNNConfig(**record["config"])
        model = ArtistGNN(config.in_dim, config.layers, config.hidden, config.out_dim, config.normalize)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        model.eval()
        return cls(config, model, record["best_epoch"], SplitScore(**record["best_val"]),
                   record["seconds_per_epoch"], [])


def _print_progress(row: dict) -> None:
    val = ("-" if row["val_ndcg200"] is None else
           f"{row['val_ndcg200']:.4f} (published IDCG {row['val_ndcg200_published']:.4f})")
    print(f"epoch {row['epoch']:4d}  loss {row['loss']:.4f}  val NDCG@200 {val}  {row['seconds']:.2f} s/epoch",
          flush=True)


def train_artist_gnn(
    graph: ArtistGraph,
    features: np.ndarray,
    config: ArtistGNNConfig,
    log: Callable[[dict], None] | None = _print_progress,
) -> TrainedArtistGNN:
    """Train on the training artists' subgraph, keep the epoch with the best validation NDCG@200.

    features: float (n, in_dim) node features for all artists (row i = node i).
    log: called once per epoch with {epoch, loss, val_ndcg200, val_ndcg200_published, seconds} (val values None
    on epochs without validation); None = silent. `seconds_per_epoch` of the result is the mean wall-clock time of
    an epoch, validation included.
    """
    if features.shape != (graph.num_nodes, config.in_dim):
        raise ValueError(f"features of shape {features.shape}, expected ({graph.num_nodes}, {config.in_dim})")
    torch.manual_seed(config.seed)
    sampler = torch.Generator().manual_seed(config.seed)
    x_all = torch.as_tensor(features, dtype=torch.float32)
    train_nodes = torch.from_numpy(graph.train)
    train_edges, _ = subgraph(train_nodes, both_directions(message_passing_edges(graph, "train")),
                              relabel_nodes=True, num_nodes=graph.num_nodes)
    x_train = x_all[train_nodes]
    train_adjacency = MeanAdjacency.from_edge_index(train_edges, len(train_nodes))
    anchor, positive = train_edges  # both directions: two triplets per undirected edge
    model = ArtistGNN(config.in_dim, config.layers, config.hidden, config.out_dim, config.normalize)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    trained = TrainedArtistGNN(config, model, -1, SplitScore(-1.0, -1.0, 0), 0.0, [])
    best_state: dict[str, torch.Tensor] = {}
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=getattr(torch, config.precision), enabled=config.precision != "float32"):
            z = model(x_train, train_adjacency).float()
        negative = torch.randint(len(train_nodes), anchor.shape, generator=sampler)
        loss = gathered_triplet_loss(z, anchor, positive, negative, config.margin)
        loss.backward()
        optimizer.step()
        validate = epoch % config.eval_every == 0 or epoch == config.epochs
        score = trained.evaluate(x_all, graph, "val") if validate else None
        row = {"epoch": epoch, "loss": loss.item(), "val_ndcg200": None if score is None else score.ndcg,
               "val_ndcg200_published": None if score is None else score.ndcg_published,
               "seconds": time.perf_counter() - start}
        trained.history.append(row)
        if log is not None:
            log(row)
        if score is not None and score.ndcg > trained.best_val.ndcg:
            trained.best_epoch, trained.best_val = epoch, score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    trained.seconds_per_epoch = float(np.mean([r["seconds"] for r in trained.history]))
    return trained


def run_layer_sweep(
    graph: ArtistGraph,
    features_name: str,
    layers: tuple[int, ...] = (0, 1, 2, 3, 4),
    epochs: int = 200,
    seed: int = 0,
    log: Callable[[dict], None] | None = _print_progress,
    **config: float,
) -> pl.DataFrame:
    """Train one model per layer count on `features_name` (see `catalog.olga.resolve_features`), each chosen on
    validation, and score it on val and test. Extra keyword arguments go to `ArtistGNNConfig` (lr, hidden, ...).

    Returns one row per (layers, split): layers, split, ndcg200, ndcg200_published, best_epoch,
    seconds_per_epoch (mean wall-clock seconds of an epoch on this machine, validation every `eval_every` included).
    """
    features = resolve_features(graph, features_name, seed=seed)
    rows = []
    for depth in layers:
        settings = ArtistGNNConfig(features.shape[1], layers=depth, epochs=epochs, seed=seed, **config)
        trained = train_artist_gnn(graph, features, settings, log=log)
        for split in ("val", "test"):
            score = trained.evaluate(features, graph, split)
            rows.append({"layers": depth, "split": split, "ndcg200": score.ndcg,
                         "ndcg200_published": score.ndcg_published, "best_epoch": trained.best_epoch,
                         "seconds_per_epoch": trained.seconds_per_epoch})
    return pl.DataFrame(rows)
