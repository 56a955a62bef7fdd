"""ACARec: artist-catalog attention for new tracks (semi-cold start), with a content fallback (cold start).

CF space. The training plays give every known track a CF embedding: the rank-`cf_dim` linear-autoencoder
factors of `recommenders.cf.cf_item_factors` with singular values to the power `cf_power` (default 1/2,
V S^½: with power 1 the popularity-driven leading components dominate every dot product and an artist's
listeners count for little; demo catalog, MusiCNN, validation users, new tracks ranked together: semi-cold
NDCG@20 .621 → .706, cold .117 → .097; power 1/4 and 0 gave .707 and .689), divided by their root-mean-square
row norm (a global scale, so that the regression losses are O(1); rankings do not change). A user's CF
profile is the mean CF embedding of the known tracks of their history; score(user, track) = profile · CF
embedding of the track.

New tracks. A new track t of artist a gets a predicted CF embedding from its audio vector x_t:
- semi-cold (a has known tracks K_a): attention over the artist's catalog,
      w_i = softmax_i(q(x_t) · k(x_i) / sqrt(attn_dim)),  c = Σ_{i∈K_a} w_i cf_i,
      (g_1, g_2, g_3) = softmax(Linear([q(x_t), Σ_i w_i k(x_i)])),
      ĉf_t = g_1 · c + g_2 · mean_{i∈K_a} cf_i + g_3 · m(x_t),
  with q, k 2-layer MLPs of the standardised audio vector (`layers.Tower`) and m the content mapping
  below; the gate falls back to the artist mean (or the track's own content) when the audio matches nothing
  in the catalog. (The 3-way gate replaced a sigmoid gate over c and the artist mean: demo validation users,
  handcrafted, semi-cold NDCG@20 .715 → .726, cold NDCG@20 .203 → .181.)
- cold (a has no known track): ĉf_t = mean_{j∈A} m(x_j), m a 2-layer MLP mapping audio to the CF space and A
  all of the new artist's tracks in the item table (t included): the artist's sound is estimated from all of
  its tracks, which are known by audio (less noisy than m(x_t) alone).
Training (seeded, Adam) on known tracks only: each known track is held out of its own artist's catalog and its
CF embedding reconstructed from the artist's other known tracks (leave-one-out), squared-error loss; the
content MLP regresses every known track's CF embedding from its audio, squared-error loss, and, weighted by
`rank_weight`, ranks it for a listener: the profile of one random user who played the track (their other
known plays) must pick the track out of the batch by m(x) (softmax over profile · m(x_j) / 0.1, cross-entropy).
The squared errors alone fit the CF space on average; the ranking term fits what a cold track's score is for.
`rank_weight` 1 was chosen on the validation users (demo, 3 seeds, 2 backbones; mean of semi-cold and cold
NDCG@20: .399 without it, .405 at 0.3, .408 at 1). The losses are summed. Early stopping
(`recommenders.training.train_loop`) on validation NDCG@`eval_k` of the new tracks:
`validation` = (histories, relevant), ranked among the model's new tracks, relevant restricted to them.

Artists: `use_side_tables({"tracks": ...})` (or setting `track_artists`, track id -> artist id) must cover
every track of the item table before `fit`; `add_items(items, track_artists)` extends it. Tracks of the item table
passed to `fit` without training plays become rankable new tracks; a batch arriving later is added with
`add_items`, without retraining the CF factors or the networks. `recommend(..., candidates)` ranks known and new
tracks alike.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from catalog.io import ItemVectors
from recommenders.base import register_recommender
from recommenders.cf import cf_item_factors, interaction_matrix
from recommenders.layers import Tower, mean_profiles
from recommenders.training import (
    LoopSettings,
    TrainedScorer,
    TrainingOptions,
    Validation,
    adam,
    align_items,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train_loop,
    validation_metric,
)


def artist_catalogs(
    item_ids: Sequence[str], n_known: int, track_artists: Mapping[str, str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(catalog, artist) of the items: `catalog` (len(item_ids), m) long = rows of each item's artist's known
    tracks (rows < `n_known`), the item itself left out, m = the largest catalog (at least 1), padded with -1;
    `artist` (len(item_ids),) long = an index per distinct artist (order of first appearance)."""
    by_artist: dict[str, list[int]] = {}
    for row in range(n_known):
        by_artist.setdefault(track_artists[item_ids[row]], []).append(row)
    catalogs = [[r for r in by_artist.get(track_artists[item], []) if r != row] for row, item in enumerate(item_ids)]
    table = torch.full((len(item_ids), max([1] + [len(c) for c in catalogs])), -1, dtype=torch.long)
    for row, catalog in enumerate(catalogs):
        table[row, : len(catalog)] = torch.tensor(catalog, dtype=torch.long)
    index: dict[str, int] = {}
    artist = torch.tensor([index.setdefault(track_artists[item], len(index)) for item in item_ids], dtype=torch.long)
    return table, artist


def listeners(train: pl.DataFrame, known_ids: Sequence[str], cf: torch.Tensor
              ) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """Who played each known track, and every user's CF profile sum: (players, sums, counts) with
    players[row] = the user indices (users sorted) that played known track `row` (order of `known_ids`),
    sums (n_users, d_cf) = Σ of the CF rows each user played, counts (n_users,) float = how many known tracks
    each user played. From the binary play matrix X of `cf.interaction_matrix`: sums = X·cf."""
    _, plays = interaction_matrix(train, known_ids)
    by_track = plays.tocsc()
    players = [by_track.indices[start:end].tolist() for start, end in zip(by_track.indptr[:-1], by_track.indptr[1:])]
    sums = torch.from_numpy(np.asarray(plays @ cf.numpy(), dtype=np.float32))
    counts = torch.from_numpy(np.asarray(plays.sum(axis=1), dtype=np.float32).ravel())
    return players, sums, counts


class AcaNet(nn.Module):
    """Buffers: `audio` (n_items, d_audio), `cf` (n_known, d_cf; the first n_known items), `catalog`
    (n_items, m) artist-catalog rows (-1 = padding), `artist` (n_items,) artist index (`artist_catalogs`).
    Modules: query/key towers, 3-way gate (attention, artist mean, own content), content tower."""

    def __init__(self, audio: torch.Tensor, cf: torch.Tensor, catalog: torch.Tensor, artist: torch.Tensor,
                 hidden: int, attn_dim: int) -> None:
        super().__init__()
        self.register_buffer("audio", audio)
        self.register_buffer("cf", cf)
        self.register_buffer("catalog", catalog)
        self.register_buffer("artist", artist)
        self.query = Tower(audio.shape[1], hidden, attn_dim)
        self.key = Tower(audio.shape[1], hidden, attn_dim)
        self.gate = nn.Linear(2 * attn_dim, 3)
        self.content = Tower(audio.shape[1], hidden, cf.shape[1])

    def set_statistics(self) -> None:
        """Fix every tower's input standardisation to the statistics of the known tracks' audio."""
        known = self.audio[: self.cf.shape[0]]
        for tower in (self.query, self.key, self.content):
            tower.set_statistics(known)

    def attend(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Artist-catalog attention for item `rows` (b,): (predicted CF (b, d_cf), has_catalog bool (b,)).
        Rows without a catalog get zeros (use `predict`)."""
        catalog = self.catalog[rows]  # (b, m)
        valid = catalog >= 0
        safe = catalog.clamp_min(0)
        q = self.query(self.audio[rows])  # (b, h)
        k = self.key(self.audio[safe.reshape(-1)]).reshape(*safe.shape, -1)  # (b, m, h)
        logits = torch.einsum("bh,bmh->bm", q, k) / q.shape[1] ** 0.5
        weights = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=1)
        has = valid.any(dim=1)
        weights = torch.where(has[:, None], weights, torch.zeros_like(weights))  # all -inf rows give nan
        values = self.cf[safe]  # (b, m, d_cf)
        attended = torch.einsum("bm,bmd->bd", weights, values)
        mean = (values * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
        gate = torch.softmax(self.gate(torch.cat([q, torch.einsum("bm,bmh->bh", weights, k)], dim=1)), dim=1)
        own = self.content(self.audio[rows])
        return gate[:, :1] * attended + gate[:, 1:2] * mean + gate[:, 2:] * own, has

    def artist_content(self, rows: torch.Tensor) -> torch.Tensor:
        """Content mapping averaged over each row's artist's items (b, d_cf): for a new artist, the mean of
        m(x_j) over all of the artist's tracks in the item table (costs one MLP pass over all items)."""
        content = self.content(self.audio)
        n_artists = int(self.artist.max()) + 1
        sums = torch.zeros(n_artists, content.shape[1], device=content.device).index_add_(0, self.artist, content)
        counts = torch.bincount(self.artist, minlength=n_artists).clamp_min(1)
        return (sums / counts[:, None])[self.artist[rows]]

    def predict(self, rows: torch.Tensor) -> torch.Tensor:
        """Predicted CF embeddings (b, d_cf) of item `rows`: attention when the artist has known tracks,
        the artist-averaged content mapping otherwise."""
        attended, has = self.attend(rows)
        return torch.where(has[:, None], attended, self.artist_content(rows))

    def item_table(self) -> torch.Tensor:
        """CF embeddings of all items (n_items, d_cf): learned factors for known, predictions for new items."""
        n_known = self.cf.shape[0]
        new = torch.arange(n_known, self.audio.shape[0], device=self.audio.device)
        return torch.cat([self.cf, self.predict(new)]) if len(new) else self.cf


RANK_TEMPERATURE = 0.1  # softmax temperature of the listener-ranking loss (profile · content, RMS norms ≤ 1)


@register_recommender
class AcaRec(TrainedScorer):
    """ACARec; `track_artists` maps every track id of the item tables to its artist id (`use_side_tables`)."""

    name = "acarec"
    version = "2"  # fused Adam, embedding_bag profiles
    ranks_new_tracks = True
    early_stops_on_new_tracks = True
    side_tables = ("tracks",)  # each track's artist

    @dataclass(frozen=True)
    class Options(TrainingOptions):
        cf_dim: int = 64
        hidden: int = 128
        attn_dim: int = 32
        lr: float = 3e-3
        batch_size: int = 32
        patience: int = 10
        eval_k: int = 20
        cf_power: float = 0.5
        rank_weight: float = 1.0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.track_artists: dict[str, str] = {}
        self.n_known = 0

    def use_side_tables(self, tables: Mapping[str, pl.DataFrame]) -> None:
        """Take each track's artist from the `tracks` table."""
        tracks = tables["tracks"]
        self.track_artists.update(zip(tracks["track_id"].to_list(), tracks["artist_id"].to_list()))

    def _check_artists(self, ids: Sequence[str]) -> None:
        missing = [i for i in ids if i not in self.track_artists]
        if missing:
            raise KeyError(f"acarec: no artist for {len(missing)} track(s), first {missing[0]!r}; "
                           "give it the tracks table (use_side_tables) covering every track of the item table")

    def fit(self, train: pl.DataFrame, items: ItemVectors | None, validation: Validation | None = None) -> "AcaRec":
        """Learn CF factors of the tracks played in `train` and the attention/content networks; every other
        track of `items` becomes a rankable new track."""
        seed_everything(self.options.seed)
        if items is not None:
            self._check_artists(items.ids)
        train, known = align_items(train, items, self.name)
        factors = cf_item_factors(train, self.options.cf_dim, self.options.seed, self.options.cf_power)
        if factors.ids != known.ids:
            raise AssertionError("acarec: CF factors and audio vectors cover different tracks")
        cf = torch.from_numpy(factors.matrix).float()
        cf = cf / cf.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
        known_set = set(known.ids)
        new = [i for i in items.ids if i not in known_set]
        self.item_ids, self.n_known = known.ids + new, len(known.ids)
        audio = torch.from_numpy(np.concatenate([known.matrix, items.subset(new).matrix])).float()
        catalog, artist = artist_catalogs(self.item_ids, self.n_known, self.track_artists)
        self.net = AcaNet(audio, cf, catalog, artist, self.options.hidden, self.options.attn_dim)
        self.net.set_statistics()
        self.net.to(self.device)

        players, sums, counts = listeners(train, known.ids, cf)
        sums, counts = sums.to(self.device), counts.to(self.device)

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            """(rows of known tracks, one random listener of each) per batch."""
            rng = np.random.default_rng([self.options.seed, epoch])
            order = rng.permutation(self.n_known)
            for start in range(0, self.n_known, self.options.batch_size):
                rows = order[start:start + self.options.batch_size]
                users = np.array([players[r][rng.integers(len(players[r]))] for r in rows])
                yield torch.from_numpy(rows).to(self.device), torch.from_numpy(users).to(self.device)

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
            rows, users = batch
            target = self.net.cf[rows]
            attended, has = self.net.attend(rows)  # the catalog of a known track leaves it out
            content = self.net.content(self.net.audio[rows])
            loss = ((content - target) ** 2).sum(1).mean()
            if has.any():
                loss = loss + ((attended[has] - target[has]) ** 2).sum(1).mean()
            # the listener's profile without this track must pick it out of the batch by its content mapping
            others = counts[users] - 1
            profiles = (sums[users] - target) / others.clamp_min(1)[:, None]
            scored = others > 0
            if self.options.rank_weight and scored.any():
                logits = profiles[scored] @ content.T / RANK_TEMPERATURE
                targets = torch.arange(len(rows), device=rows.device)[scored]
                loss = loss + self.options.rank_weight * nn.functional.cross_entropy(logits, targets)
            return loss, len(rows)

        optimizer = adam(self.net.parameters(), self.options.lr)
        self.report = train_loop(self.name, self.net, optimizer, batches, step, self._evaluator(validation, new),
                                 LoopSettings(self.options.max_epochs, self.options.patience, "tracks"))
        return self

    def _evaluator(self, validation: Validation | None, new: list[str]):
        """NDCG@eval_k of the validation users ranked among the new tracks, or None (no early stopping)."""
        if validation is None or not new:
            return None
        histories, relevant = validation
        new_set = set(new)
        kept = {u: rel & new_set for u, rel in relevant.items() if rel & new_set}
        if not kept:
            return None
        return lambda: validation_metric(lambda h, k: self.recommend(h, k, candidates=new), (histories, kept),
                                         self.options.eval_k)

    def add_items(self, items: ItemVectors, track_artists: Mapping[str, str] | None = None) -> None:
        """Make new tracks rankable (a batch released after training) without retraining anything: their CF
        embeddings are predicted from their audio and their artists' known tracks. Known ids are unchanged."""
        net = self._require_net()
        self.track_artists.update(track_artists or {})
        known = set(self.item_ids)
        self._check_artists([i for i in items.ids if i not in known])
        if not self.append_item_vectors(net, "audio", items):
            return
        catalog, artist = artist_catalogs(self.item_ids, self.n_known, self.track_artists)
        net.catalog, net.artist = catalog.to(self.device), artist.to(self.device)

    @torch.no_grad()
    def predicted_cf(self, ids: Sequence[str]) -> np.ndarray:
        """CF embeddings (len(ids), cf_dim) of known tracks (learned) or new tracks (predicted)."""
        position = self._positions()
        return self._require_net().item_table()[[position[i] for i in ids]].cpu().numpy()

    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        net = self._require_net()
        profiles = mean_profiles(net.cf, rows, self.n_known)
        return profiles @ net.item_table().T

    def save(self, folder: str | Path) -> Path:
        net = self._require_net()
        config = self.checkpoint_config(item_ids=self.item_ids, n_known=self.n_known,
                                        track_artists={i: self.track_artists[i] for i in self.item_ids})
        return save_checkpoint(folder, config, net.state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "AcaRec":
        config, tensors = load_checkpoint(folder, cls.name)
        model = cls.from_config(config)
        model.item_ids, model.n_known, model.track_artists = (config["item_ids"], config["n_known"],
                                                              config["track_artists"])
        model.net = AcaNet(tensors["audio"], tensors["cf"], tensors["catalog"], tensors["artist"], model.options.hidden,
                           model.options.attn_dim)
        model.net.load_state_dict(tensors)
        model.net.to(model.device).eval()
        return model
