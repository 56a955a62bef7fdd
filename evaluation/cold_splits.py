"""Cold-start evaluation splits: new tracks of known artists (semi-cold) and of new artists (cold).

Protocol. Training is every play before a time cutoff. A *new* track is a catalog track without any training
play (released or first played after the cutoff; on the demo catalog mostly batch b003). It is *semi-cold*
when its artist has at least one training track, *cold* when the artist is new. The evaluated users are known
users (at least one training play); their relevant items are their plays at or after the cutoff of new tracks.
These users are divided at random (seeded, `evaluation.splits.divide_users`) into a validation half, for early
stopping and model choice, and a test half for the reported numbers.

Every relevant (user, track) pair is also labelled by *novelty*: "discovery" when the user never played the
track's artist in training, "exploit" otherwise. Cold pairs are always discoveries.

`holdout_artists` (fraction in [0, 1)): catalogs where every artist released in the first batch (the demo
catalog) have no new artist after any cutoff, so a cold scenario needs artists to be withheld. A seeded
fraction of the artists is then withheld from training entirely: all their plays before the cutoff are dropped
(not moved to the test period), so their tracks have no training play and are cold; their plays after the
cutoff count as cold relevant items. Users stay known through their other training plays.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import polars as pl

from evaluation.splits import divide_users, relevant_sets, time_cutoff, time_window

Scenario = Literal["semi_cold", "cold"]
Novelty = Literal["discovery", "exploit"]
SCENARIOS: tuple[str, ...] = ("semi_cold", "cold")
NOVELTIES: tuple[str, ...] = ("discovery", "exploit")


@dataclass(frozen=True)
class ColdSplit:
    """The parts of a cold-start split.

    train: interactions contract, plays before `cutoff` (withheld artists' plays removed).
    validation, test: interactions contract plus `scenario` str ("semi_cold" | "cold") and `novelty` str
        ("discovery" | "exploit"): plays at or after `cutoff` of new tracks by known users of that half.
    scenario: every new track (played after the cutoff or not) -> "semi_cold" | "cold".
    withheld_artists: artists withheld by `holdout_artists` (sorted; empty when none).
    """

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    cutoff: datetime
    scenario: dict[str, str]
    withheld_artists: tuple[str, ...] = ()

    def candidates(self, scenario: str) -> list[str]:
        """The new tracks labelled `scenario`, sorted: the items ranked in that scenario."""
        _check_label(scenario, SCENARIOS, "scenario")
        return sorted(track for track, label in self.scenario.items() if label == scenario)


def _check_label(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; known: {list(allowed)}")


def withheld_artist_ids(artist_ids: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded random `round(fraction * n)` of the distinct `artist_ids` (order-independent)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout_artists must lie in [0, 1), got {fraction}")
    ordered = sorted(set(artist_ids))
    chosen = np.random.default_rng([seed, 1]).permutation(len(ordered))[: int(round(fraction * len(ordered)))]
    return {ordered[i] for i in chosen}


def cold_split(
    interactions: pl.DataFrame,
    tracks: pl.DataFrame,
    test_fraction: float = 0.2,
    cutoff: datetime | None = None,
    validation_share: float = 0.5,
    seed: int = 0,
    holdout_artists: float = 0.0,
    train_days: int | None = None,
    test_days: int | None = None,
) -> ColdSplit:
    """Split `interactions` at `cutoff` (default: the `test_fraction` quantile of timestamps) for cold start.

    `tracks` needs track_id and artist_id (the `tracks` contract); every played track must appear in it.
    `holdout_artists` withholds that fraction of artists from training (see the module docstring);
    `train_days` / `test_days` bound the two periods (`evaluation.splits.time_window`).
    Raises ValueError when a played track has no artist or no known user plays a new track after the cutoff.
    """
    artist_of = tracks.select("track_id", "artist_id").unique("track_id")
    unknown = interactions.join(artist_of, on="track_id", how="anti")
    if unknown.height:
        raise ValueError(f"cold_split: {unknown['track_id'].n_unique()} played track(s) missing from tracks, "
                         f"first {unknown['track_id'][0]!r}")
    cutoff = cutoff if cutoff is not None else time_cutoff(interactions, test_fraction)
    withheld = withheld_artist_ids(artist_of["artist_id"].to_list(), holdout_artists, seed)
    before, after = time_window(interactions.join(artist_of, on="track_id"), cutoff, train_days, test_days)
    is_withheld = pl.col("artist_id").is_in(sorted(withheld))
    train = before.filter(~is_withheld)

    trained_tracks = set(train["track_id"].unique().to_list())
    trained_artists = set(train["artist_id"].unique().to_list())
    new_tracks = artist_of.filter(~pl.col("track_id").is_in(sorted(trained_tracks)))
    scenario = {
        track: "semi_cold" if artist in trained_artists else "cold"
        for track, artist in zip(new_tracks["track_id"], new_tracks["artist_id"])
    }
    labels = pl.DataFrame({"track_id": list(scenario), "scenario": list(scenario.values())},
                          schema={"track_id": pl.String, "scenario": pl.String})
    user_artists = train.select("user_id", "artist_id").unique().with_columns(pl.lit("exploit").alias("novelty"))
    later = (
        after.filter(pl.col("user_id").is_in(train["user_id"].unique().implode()))
        .join(labels, on="track_id")
        .join(user_artists, on=["user_id", "artist_id"], how="left")
        .with_columns(pl.col("novelty").fill_null("discovery"))
        .drop("artist_id")
        .sort(["timestamp", "user_id", "track_id"])
    )
    if later.is_empty():
        raise ValueError(f"cold_split: no known user plays a new track at or after {cutoff}")
    validation_users, _ = divide_users(later["user_id"].unique().to_list(), validation_share, seed)
    in_validation = pl.col("user_id").is_in(sorted(validation_users))
    return ColdSplit(train.drop("artist_id"), later.filter(in_validation), later.filter(~in_validation), cutoff,
                     scenario, tuple(sorted(withheld)))


def relevant_by(part: pl.DataFrame, scenario: str | None = None, novelty: str | None = None) -> dict[str, set[str]]:
    """user_id -> relevant track ids in `part` (ColdSplit.validation or .test), optionally only the pairs of
    one `scenario` ("semi_cold" | "cold") and/or one `novelty` ("discovery" | "exploit"). Users without a
    matching pair are absent."""
    if scenario is not None:
        _check_label(scenario, SCENARIOS, "scenario")
        part = part.filter(pl.col("scenario") == scenario)
    if novelty is not None:
        _check_label(novelty, NOVELTIES, "novelty")
        part = part.filter(pl.col("novelty") == novelty)
    return relevant_sets(part)
