"""Top-k ranking shared by the score-based recommenders: a model scores every item it knows for a batch of
users; this module removes each user's history, restricts to the candidates, and returns the best `k` ids.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from catalog.histories import Histories, ScoredRankings
from catalog.io import ItemVectors
from recommenders.base import Recommender


class ItemScorer(Recommender):
    """A recommender that scores all of its `item_ids` at once; subclasses implement `score`.

    Equal scores keep `torch.topk`'s order, which is deterministic for a given input and device.
    """

    item_ids: list[str]
    batch_users: int = 512  # users scored per batch in `recommend`

    @abstractmethod
    def score(self, users: Sequence[str], rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores of shape (len(users), len(item_ids)); `rows[b]` = item rows of user b's history, oldest first."""

    def item_rows(self, items: Sequence[str]) -> list[int]:
        """Rows of the known `items`, in order; unknown ids are skipped (a model cannot use them). A subclass
        may map an unknown id to a row ≥ len(item_ids) of its own (an input token, never a scored item)."""
        position = self._positions()
        return [position[i] for i in items if i in position]

    def _require_net(self) -> Any:
        """The fitted network `self.net` of a torch-trained model; RuntimeError before fit or load."""
        net = getattr(self, "net", None)
        if net is None:
            raise RuntimeError(f"{self.name}: fit or load the model first")
        return net

    def append_item_vectors(self, module: nn.Module, buffer: str, items: ItemVectors) -> list[str]:
        """Cold start without retraining: append the vectors of the `items` this model does not know to the
        (n_items, dim) buffer `buffer` of `module` and their ids to `item_ids`; returns the new ids (known
        ids keep their rows and vectors)."""
        known = set(self.item_ids)
        new = [i for i in items.ids if i not in known]
        if new:
            current = getattr(module, buffer)
            extra = torch.from_numpy(items.subset(new).matrix).to(current.device, current.dtype)
            setattr(module, buffer, torch.cat([current, extra]))
            self.item_ids = self.item_ids + new
        return new

    def _positions(self) -> dict[str, int]:
        ids, cached = getattr(self, "_position_cache", (None, None))
        if ids is not self.item_ids or len(cached) != len(ids):  # a refit or add_items changes the list
            cached = {item: row for row, item in enumerate(self.item_ids)}
            self._position_cache = (self.item_ids, cached)
        return cached

    def _allowed(self, candidates: Sequence[str] | None) -> torch.Tensor | None:
        if candidates is None:
            return None
        position = self._positions()
        unknown = [c for c in candidates if c not in position]
        if unknown:
            raise KeyError(
                f"{self.name}: {len(unknown)} candidate(s) unknown to the model (first {unknown[0]!r}); "
                "content models can add new items with add_items()"
            )
        allowed = torch.zeros(len(self.item_ids), dtype=torch.bool)
        allowed[[position[c] for c in candidates]] = True
        return allowed

    @torch.no_grad()
    def recommend_scored(self, histories: Histories, k: int,
                         candidates: Sequence[str] | None = None) -> ScoredRankings:
        """Top-`k` (item, score) per user, best first, never an item of the user's history, only `candidates`
        if given."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        allowed = self._allowed(candidates)
        users = list(histories)
        rankings: ScoredRankings = {}
        for start in range(0, len(users), self.batch_users):
            batch = users[start:start + self.batch_users]
            rows = [self.item_rows(histories[u]) for u in batch]
            scores = self.score(batch, rows).float().cpu().clone()
            for b, seen in enumerate(rows):
                scores[b, [r for r in seen if r < len(self.item_ids)]] = float("-inf")
            if allowed is not None:
                scores[:, ~allowed] = float("-inf")
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            for b, user in enumerate(batch):
                keep = torch.isfinite(top.values[b])
                rankings[user] = [(self.item_ids[i], score) for i, score in
                                  zip(top.indices[b][keep].tolist(), top.values[b][keep].tolist())]
        return rankings
