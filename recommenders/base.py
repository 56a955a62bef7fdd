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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl

from catalog.io import ItemVectors, update_with_table

Histories = Mapping[str, Sequence[str]]  # user_id -> track ids, oldest first
Rankings = dict[str, list[str]]  # user_id -> top-k track ids, best first


class Recommender(ABC):
    name: ClassVar[str]
    uses_content: ClassVar[bool] = True  # False for pure-CF baselines (popularity, EASE)
    # True when `fit` reads only the vectors of tracks played in `train` (the trained models, through
    # `training.align_items`): then vectors of unplayed tracks cannot change the fitted model (fit_fingerprint).
    fits_played_items_only: ClassVar[bool] = False

    @abstractmethod
    def fit(
        self,
        train: pl.DataFrame,
        items: ItemVectors | None,
        validation: tuple[Histories, Mapping[str, set[str]]] | None = None,
    ) -> "Recommender":
        """Learn from `train` (interactions contract). `validation` = (histories, relevant) for early stopping."""

    @abstractmethod
    def recommend(
        self, histories: Histories, k: int, candidates: Sequence[str] | None = None
    ) -> Rankings:
        """Top-`k` tracks per user, best first, excluding each user's history."""

    @abstractmethod
    def save(self, folder: str | Path) -> Path:
        """Write `config.json` + `model.safetensors` into `folder` atomically."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | Path) -> "Recommender":
        """Inverse of `save`."""


RECOMMENDERS: dict[str, Callable[..., Recommender]] = {}


def register_recommender(name: str) -> Callable:
    """Class decorator adding a recommender to `RECOMMENDERS` under `name`."""

    def decorate(cls):
        if name in RECOMMENDERS:
            raise ValueError(f"recommender {name!r} registered twice")
        RECOMMENDERS[name] = cls
        return cls

    return decorate


def histories_from(interactions: pl.DataFrame) -> dict[str, list[str]]:
    """user_id -> track ids ordered by timestamp (ties by track_id), from an interactions table."""
    ordered = interactions.sort(["user_id", "timestamp", "track_id"])
    grouped = ordered.group_by("user_id", maintain_order=True).agg(pl.col("track_id"))
    return dict(zip(grouped["user_id"].to_list(), grouped["track_id"].to_list()))


FIT_FINGERPRINT_FILE = "fit_fingerprint.txt"


def fit_fingerprint(
    model_class: type[Recommender], version: str, train: pl.DataFrame, validation: pl.DataFrame,
    items: ItemVectors | None,
) -> str:
    """Hash of everything a fit depends on: the recommender and its `version` (code and options), the train
    and validation interactions, and the item vectors the fit reads (only the played tracks' when
    `model_class.fits_played_items_only`). Equal fingerprints give the same model, so a stored one is reused."""
    digest = hashlib.sha256(json.dumps([model_class.__name__, version]).encode())
    for table in (train, validation):
        update_with_table(digest, table)
    if items is not None:
        if model_class.fits_played_items_only:
            items = items.subset(sorted(set(train["track_id"].to_list()) & set(items.ids)))
        order = np.argsort(np.asarray(items.ids))
        digest.update(json.dumps([items.ids[i] for i in order]).encode())
        digest.update(np.ascontiguousarray(items.matrix[order], dtype=np.float32).tobytes())
    return digest.hexdigest()


def stored_fit_fingerprint(folder: str | Path) -> str | None:
    """The fingerprint saved beside a model by the pipeline (None when absent)."""
    path = Path(folder) / FIT_FINGERPRINT_FILE
    return path.read_text().strip() if path.exists() else None
