"""Time-based evaluation splits (the journal protocol of the pretrained-audio-representations study).

Training is every interaction before a cutoff time; the test period is what follows. In the hot scenario only
test-period plays of known users on known tracks count; the users of the test period are divided at random
(seeded) into a validation half, which drives early stopping and model choice, and a test half, which is only
ever used for the reported numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl


@dataclass(frozen=True)
class HotSplit:
    """Interactions tables (contract `interactions`) of the three parts, and the cutoff separating them."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    cutoff: datetime


def time_cutoff(interactions: pl.DataFrame, test_fraction: float) -> datetime:
    """The timestamp such that about `test_fraction` of the interactions are at or after it."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if interactions.is_empty():
        raise ValueError("cannot split an empty interactions table")
    return interactions["timestamp"].quantile(1.0 - test_fraction, interpolation="lower")


def time_window(interactions: pl.DataFrame, cutoff: datetime, train_days: int | None,
                test_days: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(plays in the `train_days` before `cutoff`, plays in the `test_days` from it); None: no bound."""
    before = pl.col("timestamp") < cutoff
    if train_days is not None:
        before &= pl.col("timestamp") >= cutoff - timedelta(days=train_days)
    after = pl.col("timestamp") >= cutoff
    if test_days is not None:
        after &= pl.col("timestamp") < cutoff + timedelta(days=test_days)
    return interactions.filter(before), interactions.filter(after)


def divide_users(users: list[str], validation_share: float, seed: int) -> tuple[set[str], set[str]]:
    """Seeded random division of `users` into (validation, test) sets; the validation set gets
    round(validation_share * n) users."""
    ordered = sorted(users)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_validation = int(round(validation_share * len(ordered)))
    validation = {ordered[i] for i in order[:n_validation]}
    return validation, set(ordered) - validation


def hot_split(
    interactions: pl.DataFrame,
    test_fraction: float = 0.2,
    cutoff: datetime | None = None,
    validation_share: float = 0.5,
    seed: int = 0,
    train_days: int | None = None,
    test_days: int | None = None,
) -> HotSplit:
    """Split by time at `cutoff` (default: the `test_fraction` quantile of timestamps); training is the
    `train_days` before it and the test period the `test_days` from it (None: unbounded; `time_window`).

    The test period keeps only users and tracks seen in training and drops any (user, track) pair already in
    training, so every remaining row is a new play of a known track by a known user.
    """
    cutoff = cutoff if cutoff is not None else time_cutoff(interactions, test_fraction)
    train, later = time_window(interactions, cutoff, train_days, test_days)
    later = later.filter(
        pl.col("user_id").is_in(train["user_id"].unique().implode())
        & pl.col("track_id").is_in(train["track_id"].unique().implode())
    ).join(train.select("user_id", "track_id"), on=["user_id", "track_id"], how="anti")
    validation_users, _ = divide_users(later["user_id"].unique().to_list(), validation_share, seed)
    is_validation = pl.col("user_id").is_in(sorted(validation_users))
    return HotSplit(train, later.filter(is_validation), later.filter(~is_validation), cutoff)


def relevant_sets(interactions: pl.DataFrame) -> dict[str, set[str]]:
    """user_id -> set of track ids the user played in `interactions` (the ground truth of a test period)."""
    grouped = interactions.group_by("user_id").agg(pl.col("track_id"))
    return {user: set(tracks) for user, tracks in zip(grouped["user_id"], grouped["track_id"])}
