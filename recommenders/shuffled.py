"""The shuffled-content control: a backbone's vectors permuted across items, so that a model trained on them
sees the same vector distribution but no link between a track and its audio. What a content model gains over
its shuffled twin is what the audio adds.
"""
from __future__ import annotations

import numpy as np

from catalog.io import ItemVectors


def shuffle_items(items: ItemVectors, seed: int) -> ItemVectors:
    """Same ids, rows of `items.matrix` in a seeded random order (a permutation, so no vector is lost)."""
    order = np.random.default_rng(seed).permutation(len(items.ids))
    return ItemVectors(list(items.ids), items.matrix[order].copy())
