"""The time-based hot split: time order, known users/tracks only, no repeated pairs, disjoint seeded halves."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from catalog.io import read_table
from evaluation.splits import divide_users, hot_split, relevant_sets, time_cutoff, time_window


def synthetic(seed: int = 0, users: int = 50, tracks: int = 40, rows: int = 900) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({
        "user_id": [f"u{i:02d}" for i in rng.integers(0, users, rows)],
        "track_id": [f"t{i:02d}" for i in rng.integers(0, tracks, rows)],
        "timestamp": [datetime(2024, 1, 1) + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 30, rows)],
        "count": rng.integers(1, 5, rows).astype(np.int32),
    }).unique(["user_id", "track_id"], keep="first", maintain_order=True)
    # late tracks and late users that never appear in training
    late = pl.DataFrame({"user_id": ["u_new", "u00", "u_new"], "track_id": ["t00", "t_new", "t_new"],
                         "timestamp": [datetime(2024, 2, 5)] * 3, "count": np.array([1, 1, 1], np.int32)})
    return pl.concat([frame, late])


def check_split(interactions: pl.DataFrame, split) -> None:
    train, validation, test = split.train, split.validation, split.test
    assert (train["timestamp"] < split.cutoff).all()
    later = pl.concat([validation, test])
    assert later.height > 0 and (later["timestamp"] >= split.cutoff).all()
    assert set(later["user_id"]) <= set(train["user_id"])
    assert set(later["track_id"]) <= set(train["track_id"])
    assert later.join(train, on=["user_id", "track_id"], how="inner").height == 0
    assert set(validation["user_id"]).isdisjoint(set(test["user_id"]))
    # nothing else is lost: every later row that is a new play of a known pair is kept
    train_pairs = set(zip(train["user_id"], train["track_id"]))
    expected = [r for r in interactions.filter(pl.col("timestamp") >= split.cutoff).iter_rows(named=True)
                if r["user_id"] in set(train["user_id"]) and r["track_id"] in set(train["track_id"])
                and (r["user_id"], r["track_id"]) not in train_pairs]
    assert later.height == len(expected)
    assert train.height == interactions.filter(pl.col("timestamp") < split.cutoff).height
    for part in (train, validation, test):
        assert part.columns == interactions.columns


def test_hot_split_on_synthetic_data():
    interactions = synthetic()
    split = hot_split(interactions, test_fraction=0.2, seed=0)
    check_split(interactions, split)
    later = interactions.filter(pl.col("timestamp") >= split.cutoff)
    assert later.height / interactions.height == pytest.approx(0.2, abs=0.02)
    kept = pl.concat([split.validation, split.test])
    assert "u_new" not in set(kept["user_id"]) and "t_new" not in set(kept["track_id"])
    # validation gets about half the test-period users
    n_val, n_test = split.validation["user_id"].n_unique(), split.test["user_id"].n_unique()
    assert abs(n_val - n_test) <= 1


def test_hot_split_on_the_tiny_demo_catalog(tiny_catalog):
    interactions = read_table(tiny_catalog / "interactions.parquet", "interactions")
    split = hot_split(interactions, test_fraction=0.2, seed=0)
    check_split(interactions, split)


def test_user_division_is_deterministic_per_seed_and_disjoint():
    users = [f"u{i:03d}" for i in range(40)]
    first = divide_users(users, 0.5, seed=7)
    assert first == divide_users(list(reversed(users)), 0.5, seed=7)  # input order does not matter
    validation, test = first
    assert len(validation) == 20 and validation.isdisjoint(test) and validation | test == set(users)
    assert divide_users(users, 0.5, seed=8)[0] != validation
    assert len(divide_users(users, 0.25, seed=7)[0]) == 10

    interactions = synthetic()
    a, b = hot_split(interactions, seed=3), hot_split(interactions, seed=3)
    assert a.validation.equals(b.validation) and a.test.equals(b.test)
    c = hot_split(interactions, seed=4)
    assert set(c.validation["user_id"]) != set(a.validation["user_id"])
    assert pl.concat([a.validation, a.test]).sort(["user_id", "track_id"]).equals(
        pl.concat([c.validation, c.test]).sort(["user_id", "track_id"]))  # only the division changes


def test_explicit_cutoff_and_bad_arguments():
    interactions = synthetic()
    cutoff = datetime(2024, 1, 20)
    split = hot_split(interactions, cutoff=cutoff)
    assert split.cutoff == cutoff
    check_split(interactions, split)
    assert time_cutoff(interactions, 0.5) == interactions["timestamp"].quantile(0.5, interpolation="lower")
    with pytest.raises(ValueError, match="test_fraction"):
        time_cutoff(interactions, 1.0)
    with pytest.raises(ValueError, match="empty"):
        time_cutoff(interactions.head(0), 0.2)


def test_relevant_sets():
    frame = pl.DataFrame({"user_id": ["u1", "u1", "u2"], "track_id": ["a", "b", "a"]})
    assert relevant_sets(frame) == {"u1": {"a", "b"}, "u2": {"a"}}


def test_train_and_test_days_bound_the_two_periods():
    interactions = synthetic()
    cutoff = datetime(2024, 1, 20)
    before, after = time_window(interactions, cutoff, train_days=7, test_days=3)
    assert (before["timestamp"] >= cutoff - timedelta(days=7)).all() and (before["timestamp"] < cutoff).all()
    assert (after["timestamp"] >= cutoff).all() and (after["timestamp"] < cutoff + timedelta(days=3)).all()
    in_window = interactions.filter((pl.col("timestamp") >= cutoff - timedelta(days=7))
                                    & (pl.col("timestamp") < cutoff + timedelta(days=3)))
    assert before.height + after.height == in_window.height
    unbounded_before, unbounded_after = time_window(interactions, cutoff, None, None)
    assert unbounded_before.height + unbounded_after.height == interactions.height
    split = hot_split(interactions, cutoff=cutoff, train_days=7, test_days=3)
    assert split.train.equals(before)
    later = pl.concat([split.validation, split.test])
    assert later.height > 0 and (later["timestamp"] < cutoff + timedelta(days=3)).all()
    assert set(later["user_id"]) <= set(before["user_id"]) and set(later["track_id"]) <= set(before["track_id"])
