"""The `Recommender` interface every model implements, and the recommender registry.

Conventions: ids are strings; a user's history is the ordered list (oldest first) of the tracks they played;
`recommend` never returns an item of the user's history; `candidates` restricts ranking to a set of items
(the cold-start scenario ranks only new tracks). A saved model is a folder with `config.json` and
`model.safetensors`.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from catalog.histories import Histories, Rankings, ScoredRankings
from catalog.io import ItemVectors, update_with_table
from catalog.registry import Configurable, Registry, options_digest


class Recommender(Configurable, ABC):
    """A recommender. Besides `Configurable`'s name, version, Options and needs_gpu, a class declares:"""

    uses_content: ClassVar[bool] = True  # False for pure-CF baselines (popularity, EASE): no backbone
    # True when it ranks tracks without training plays from their vectors (`add_items`): a cold-start system
    ranks_new_tracks: ClassVar[bool] = False
    # cold start: True when early stopping watches the validation users' plays of new tracks (acarec), False
    # when it watches their later plays of known tracks (models that rank new tracks exactly as known ones)
    early_stops_on_new_tracks: ClassVar[bool] = False
    # catalog tables besides the plays that `fit` reads, handed over by `use_side_tables` (e.g. ("tracks",))
    side_tables: ClassVar[tuple[str, ...]] = ()
    # True when `fit` reads only the vectors of tracks played in `train` (the trained models, through
    # `training.align_items`): then vectors of unplayed tracks cannot change the fitted model (fit_fingerprint).
    fits_played_items_only: ClassVar[bool] = False

    def use_side_tables(self, tables: Mapping[str, pl.DataFrame]) -> None:
        """Receive the catalog tables named in `side_tables` (by name) before `fit`; the default reads none."""

    @abstractmethod
    def fit(
        self,
        train: pl.DataFrame,
        items: ItemVectors | None,
        validation: tuple[Histories, Mapping[str, set[str]]] | None = None,
    ) -> "Recommender":
        """Learn from `train` (interactions contract). `validation` = (histories, relevant) for early stopping."""

    @abstractmethod
    def recommend_scored(
        self, histories: Histories, k: int, candidates: Sequence[str] | None = None
    ) -> ScoredRankings:
        """Top-`k` (track, score) pairs per user, best first, excluding each user's history; only
        `candidates` when given. Scores are the model's own (comparable within one user's list)."""

    def recommend(self, histories: Histories, k: int, candidates: Sequence[str] | None = None) -> Rankings:
        """Top-`k` tracks per user, best first (`recommend_scored` without the scores)."""
        return {user: [track for track, _ in pairs]
                for user, pairs in self.recommend_scored(histories, k, candidates).items()}

    @abstractmethod
    def save(self, folder: str | Path) -> Path:
        """Write `config.json` + `model.safetensors` into `folder` atomically."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | Path) -> "Recommender":
        """Inverse of `save`."""

    def checkpoint_config(self, **state: Any) -> dict[str, Any]:
        """What `config.json` holds: the recommender's name, version and options, and `state` (item ids...)."""
        return {"recommender": self.name, "version": self.version, "options": self.options_dict(), **state}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Recommender":
        """An unfitted instance with the options stored in a `config.json` (see `checkpoint_config`)."""
        return cls(**config["options"])


RECOMMENDERS: Registry[type[Recommender]] = Registry("recommender", "recommenders")
register_recommender = RECOMMENDERS.register


FIT_FINGERPRINT_FILE = "fit_fingerprint.txt"


def fit_fingerprint(
    model: Recommender, train: pl.DataFrame, validation: pl.DataFrame, items: ItemVectors | None,
    side_tables: Mapping[str, pl.DataFrame] | None = None,
) -> str:
    """Hash of everything a fit of the (unfitted) `model` depends on: its class, version and options, the
    train and validation interactions, the side tables it reads, and the item vectors the fit reads (only the
    played tracks' when `fits_played_items_only`). Equal fingerprints give the same model, so a stored one
    is reused."""
    digest = hashlib.sha256(json.dumps([type(model).__name__, model.version, options_digest(model.options)]).encode())
    for table in (train, validation, *(side_tables or {}).values()):
        update_with_table(digest, table)
    if items is not None:
        if model.fits_played_items_only:
            items = items.subset(sorted(set(train["track_id"].to_list()) & set(items.ids)))
        order = np.argsort(np.asarray(items.ids))
        digest.update(json.dumps([items.ids[i] for i in order]).encode())
        digest.update(np.ascontiguousarray(items.matrix[order], dtype=np.float32).tobytes())
    return digest.hexdigest()


def stored_fit_fingerprint(folder: str | Path) -> str | None:
    """The fingerprint saved beside a model by the pipeline (None when absent)."""
    path = Path(folder) / FIT_FINGERPRINT_FILE
    return path.read_text().strip() if path.exists() else None
