"""BERT4Rec over an item table that is either frozen from an audio backbone or learned.

Two transformer layers, two heads, FFN 256; the hidden size is the item dimension, or a linear projection of
it when the dimension is large (> `max_hidden`) or not divisible by the heads; the output layer is tied to the
(projected) item table. A frozen table is scaled by one scalar to root-mean-square row norm 1 (`scaled_table`;
on the synthetic 5k catalog, validation NDCG@50 after 3 epochs .073 unscaled, .241 scaled). Training masks
20 % of the item positions (at least one per sequence) of each user's last `max_len` plays; recommendation
appends a mask token to the user's last `max_len − 1` plays. A play of a track outside the model's items (a
learned table cut to `max_items`, a track without a vector) stays in the sequence as one shared unknown-item
token: it keeps its place in the context but is never a target.
A learned table starts at random (BERT's init) or, with `item_init="cf"`, from the rank-`hidden` SVD factors
of the training plays: on sparse real plays (Music4All-Onion, README) only the latter beats popularity.

The encoder layers are `nn.TransformerEncoderLayer`s (their parameters, hence checkpoints, are unchanged) run
by `Bert4RecNet._encode`: attention through `torch.nn.functional.scaled_dot_product_attention`, outputs equal to
the layers' own within float error in eval mode. Since version 2, training drops out (`dropout`) where BERT and
BERT4Rec do, on the embeddings, the attention output and the FFN output, but not inside the FFN, and the
attention weights only with `attention_dropout` (default 0): without it the CPU runs the fused (flash)
attention kernel. A CPU training step at length 200 takes about 0.7 of version 1's CPU time
(benchmarks/anchor_bert4rec.py has the throughput and NDCG@10 beside RecBole's BERT4Rec).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from catalog.histories import histories_from
from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.cf import cf_item_factors, most_played_items
from recommenders.training import (
    LoopSettings,
    TrainedScorer,
    TrainingOptions,
    Validation,
    align_items,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train_loop,
    validation_metric,
)

ITEM_TABLE_NORM = 1.0  # root-mean-square row norm of a frozen or CF-initialised item table


class Bert4RecNet(nn.Module):
    """Token ids: 0..n_items−1 items, n_items = padding, n_items + 1 = mask, n_items + 2 = unknown item.
    Sequences are left-padded; position 0 is the newest play."""

    def __init__(self, n_items: int, hidden: int, max_len: int, frozen: torch.Tensor | None = None,
                 layers: int = 2, heads: int = 2, ffn: int = 256, dropout: float = 0.1,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.n_items, self.max_len, self.attention_dropout = n_items, max_len, attention_dropout
        if frozen is not None:
            self.register_buffer("item_vectors", frozen)
            self.project = nn.Identity() if frozen.shape[1] == hidden else nn.Linear(frozen.shape[1], hidden)
        else:
            self.item_table = nn.Parameter(torch.randn(n_items, hidden) * 0.02)
        self.special = nn.Parameter(torch.randn(3, hidden) * 0.02)  # padding, mask, unknown item
        self.position = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.position.weight, std=0.02)  # same scale as the learned items (BERT's init)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, ffn, dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.bias = nn.Parameter(torch.zeros(n_items))

    @property
    def pad(self) -> int:
        return self.n_items

    @property
    def mask(self) -> int:
        return self.n_items + 1

    @property
    def unknown(self) -> int:
        return self.n_items + 2

    def items(self) -> torch.Tensor:
        """The (n_items, hidden) item table used for input and (tied) output."""
        return self.project(self.item_vectors) if hasattr(self, "item_vectors") else self.item_table

    def forward(self, tokens: torch.Tensor, last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (b, L) → (hidden states (b, L, hidden), item table (n_items, hidden)); with `last_only` the
        states of the last position only, (b, 1, hidden): the last layer then runs its attention output and FFN
        for that position alone (the same values, at about 3/4 of the encoder's work)."""
        items = self.items()
        table = torch.cat([items, self.special])
        # positions count back from the newest play (the last column is 0), so a play's position does not
        # depend on how wide its batch was padded (training batches and recommendation batches differ)
        positions = torch.arange(tokens.shape[1] - 1, -1, -1, device=tokens.device)
        x = self.dropout(self.norm(table[tokens] + self.position(positions)[None]))
        padding = tokens == self.pad
        # additive key mask (b, 1, 1, L), None when the batch has no padding (length-sorted batches rarely do)
        keys = (torch.zeros(padding.shape, dtype=x.dtype, device=x.device).masked_fill(padding, float("-inf"))
                [:, None, None, :] if bool(padding.any()) else None)
        layers = self.encoder.layers
        for number, layer in enumerate(layers, start=1):
            x = self._encode(layer, x, keys, last_only=last_only and number == len(layers))
        return x, items

    def _encode(self, layer: nn.TransformerEncoderLayer, x: torch.Tensor, keys: torch.Tensor | None,
                last_only: bool = False) -> torch.Tensor:
        """One post-norm encoder layer on (b, L, hidden) states as `layer.forward` computes it, but with attention
        by `scaled_dot_product_attention` (dropout on the attention weights: `attention_dropout`, in training) and
        no dropout inside the FFN (`layer.dropout` is not used); `keys` is the additive key mask (b, 1, 1, L).
        With `last_only`, only the last position queries: the output is (b, 1, hidden)."""
        b, length, hidden = x.shape
        attention = layer.self_attn
        heads = attention.num_heads
        qkv = nn.functional.linear(x, attention.in_proj_weight, attention.in_proj_bias)  # (b, L, 3 hidden)
        q, k, v = qkv.view(b, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)  # each (b, heads, L, d)
        if last_only:
            q, x, length = q[:, :, -1:], x[:, -1:], 1
        mixed = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=keys, dropout_p=self.attention_dropout if self.training else 0.0)
        mixed = attention.out_proj(mixed.transpose(1, 2).reshape(b, length, hidden))
        x = layer.norm1(x + layer.dropout1(mixed))
        return layer.norm2(x + layer.dropout2(layer.linear2(layer.activation(layer.linear1(x)))))

    def logits(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(m, hidden) states → (m, n_items) scores with the tied item table."""
        return torch.addmm(self.bias, states, items.T)  # the bias added in the product: one pass over (m, n_items)


def scaled_table(table: torch.Tensor) -> torch.Tensor:
    """(n, d) item table times one scalar, so its root-mean-square row norm is ITEM_TABLE_NORM (directions and
    relative norms kept). The logits are dot products with layer-normed states (norm about sqrt(hidden)): a raw
    audio table of norm ~20 makes them hundreds wide and the softmax one-hot from the first step."""
    rms = float(table.pow(2).sum(1).mean().sqrt()) or 1.0
    return table * (ITEM_TABLE_NORM / rms)


def left_pad(sequences: Sequence[Sequence[int]], pad: int) -> np.ndarray:
    """(b, max length) int64 array, each sequence right-aligned, `pad` before it."""
    width = max(len(s) for s in sequences)
    out = np.full((len(sequences), width), pad, dtype=np.int64)
    for row, seq in enumerate(sequences):
        if len(seq):
            out[row, width - len(seq):] = seq
    return out


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of `lengths` in batches of sequences of about equal length, in random order.

    Sequences are shuffled, stably sorted by length (so equal lengths stay shuffled), cut into batches, and the
    batches shuffled: padding, and with it the transformer's work, shrinks to a few tokens per sequence
    (Music4All-Onion, 8,000 items: an epoch in 4.0 s instead of 16.5 s with random batches; one thread each,
    two runs side by side).
    """
    shuffled = rng.permutation(len(lengths))
    by_length = shuffled[np.argsort(lengths[shuffled], kind="stable")]
    chunks = [by_length[start:start + batch_size] for start in range(0, len(by_length), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


@contextmanager
def unfilled_memory() -> Iterator[None]:
    """Turn off torch's NaN filling of fresh tensors under deterministic algorithms (`seed_everything`) for the
    block: it only guards against kernels that read memory they did not write, costs about a tenth of a CPU
    training step here, and the results do not change."""
    import torch.utils.deterministic as deterministic

    before = deterministic.fill_uninitialized_memory
    deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = before


@register_recommender
class Bert4Rec(TrainedScorer):
    """BERT4Rec; `fit(train, items=None)` or `learned_items=True` learns the item table, else freezes `items`."""

    name = "bert4rec"
    version = "3"  # 2: fused attention, no FFN-inner dropout; 3: frozen table scaled to RMS row norm 1
    fits_played_items_only = True  # vectors reach fit through align_items

    @dataclass(frozen=True)
    class Options(TrainingOptions):
        learned_items: bool = False
        hidden: int | None = None
        max_hidden: int = 256
        proj_dim: int = 128
        layers: int = 2
        heads: int = 2
        ffn: int = 256
        dropout: float = 0.1
        attention_dropout: float = 0.0
        mask_prob: float = 0.2
        max_len: int = 200
        batch_size: int = 64
        max_items: int | None = None
        item_init: str = "random"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options.item_init not in ("random", "cf"):
            raise ValueError(f"bert4rec: item_init must be 'random' or 'cf', got {self.options.item_init!r}")
        self.learned_items = self.options.learned_items  # also true after a fit without item vectors

    def _hidden_for(self, item_dim: int | None) -> int:
        """Hidden size: `hidden` if set; learned items 64; frozen items their dim unless too large or odd."""
        if self.options.hidden is not None:
            return self.options.hidden
        if item_dim is None:
            return 64
        fits = item_dim <= self.options.max_hidden and item_dim % self.options.heads == 0
        return item_dim if fits else self.options.proj_dim

    def _build(self, n_items: int, frozen: torch.Tensor | None, hidden: int) -> Bert4RecNet:
        return Bert4RecNet(n_items, hidden, self.options.max_len, frozen, self.options.layers, self.options.heads,
                           self.options.ffn, self.options.dropout, self.options.attention_dropout).to(self.device)

    def fit(self, train: pl.DataFrame, items: ItemVectors | None = None,
            validation: Validation | None = None) -> "Bert4Rec":
        seed_everything(self.options.seed)
        if items is None or self.learned_items:
            self.learned_items = True
            self.item_ids, frozen = most_played_items(train, self.options.max_items), None
        else:
            train, vectors = align_items(train, items, self.name)
            self.item_ids, frozen = vectors.ids, scaled_table(torch.from_numpy(vectors.matrix).float())
        self.net = self._build(len(self.item_ids), frozen,
                               self._hidden_for(None if frozen is None else frozen.shape[1]))
        if frozen is None and self.options.item_init == "cf":
            self._init_items_from_cf(train)
        sequences = self.training_sequences(train)
        tokens_played = np.concatenate(sequences)
        plays = np.bincount(tokens_played[tokens_played < self.net.pad], minlength=len(self.item_ids))
        with torch.no_grad():  # start from the popularity prior: Adam would need thousands of steps to learn it
            prior = torch.from_numpy(np.log1p(plays)).float()
            self.net.bias.copy_(prior - prior.mean())

        def step(batch: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[torch.Tensor, int]:
            return self.masked_loss(*batch), len(batch[0])

        evaluate = None if validation is None else (
            lambda: validation_metric(self.recommend, validation, self.options.eval_k))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.options.lr)
        with unfilled_memory():
            self.report = train_loop(self.name, self.net, optimizer,
                                     lambda epoch: self.masked_batches(sequences, epoch), step, evaluate,
                                     LoopSettings(self.options.max_epochs, self.options.patience, "sequences"))
        return self

    def training_sequences(self, train: pl.DataFrame) -> list[list[int]]:
        """Each training user's last `max_len` plays as model rows, users sorted, users without a target left out."""
        histories = histories_from(train)
        sequences = [self.item_rows(histories[user])[-self.options.max_len:] for user in sorted(histories)]
        return [s for s in sequences if min(s) < self.net.pad]  # at least one item that can be a target

    def masked_batches(self, sequences: list[list[int]], epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        """One epoch's training batches (seeded by `seed` and `epoch`): tokens (b, L) int64 left-padded with the
        masked positions set to the mask token, the mask (b, L) bool, and the masked positions' labels (m,)."""
        rng = np.random.default_rng([self.options.seed, epoch])
        lengths = np.array([len(s) for s in sequences])
        for rows in length_batches(lengths, self.options.batch_size, rng):
            tokens = left_pad([sequences[i] for i in rows], self.net.pad)
            targets = tokens < self.net.pad  # item positions (not padding, not unknown items)
            masked = targets & (rng.random(tokens.shape) < self.options.mask_prob)
            for row in np.flatnonzero(~masked.any(axis=1)):  # at least one masked position per sequence
                masked[row, np.flatnonzero(targets[row])[-1]] = True
            labels = tokens[masked]
            tokens[masked] = self.net.mask
            yield tokens, masked, labels

    def masked_loss(self, tokens: np.ndarray, masked: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        """Mean cross-entropy, over every track, of the masked positions' labels for one `masked_batches` batch."""
        states, table = self.net(torch.from_numpy(tokens).to(self.device))
        rows, columns = (torch.from_numpy(index).to(self.device) for index in np.nonzero(masked))
        return nn.functional.cross_entropy(self.net.logits(states[rows, columns], table),
                                           torch.from_numpy(labels).to(self.device))

    def _init_items_from_cf(self, train: pl.DataFrame) -> None:
        """Start the learned item table from the rank-`hidden` CF factors of the training plays
        (`cf.cf_item_factors`), rows scaled to root-mean-square norm `ITEM_TABLE_NORM`."""
        hidden = self.net.item_table.shape[1]
        factors = cf_item_factors(train, hidden, self.options.seed).subset(self.item_ids).matrix
        with torch.no_grad():
            self.net.item_table.copy_(scaled_table(torch.from_numpy(factors).float()))

    def item_rows(self, items: Sequence[str]) -> list[int]:
        """Rows of `items` in order, an item unknown to the model as the unknown-item token (row n_items + 2)."""
        unknown = self._require_net().unknown
        position = self._positions()
        return [position.get(i, unknown) for i in items]

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        self._require_net()
        keep = self.options.max_len - 1
        tokens = left_pad([list(r)[-keep:] + [self.net.mask] if keep else [self.net.mask] for r in rows],
                          self.net.pad)
        states, table = self.net(torch.from_numpy(tokens).to(self.device), last_only=True)
        return self.net.logits(states[:, -1], table)

    def save(self, folder: str | Path) -> Path:
        hidden = int(self.net.position.weight.shape[1])
        config = self.checkpoint_config(hidden=hidden, learned_items=self.learned_items, item_ids=self.item_ids)
        return save_checkpoint(folder, config, self.net.state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Bert4Rec":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids, model.learned_items = config["item_ids"], config["learned_items"]
        model.net = model._build(len(model.item_ids), tensors.get("item_vectors"), config["hidden"])
        model.net.load_state_dict(tensors)
        model.net.eval()
        return model
