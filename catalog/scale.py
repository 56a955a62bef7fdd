"""A synthetic catalog at any size, with planted structure so that content matters: the scale experiments'
catalog (no audio; the `synthetic` backbone gives the vectors).

World. Tracks belong to artists, artists to taste clusters. Track popularity is Zipf-like (a track's weight
within its cluster is 1 / rank^`zipf`). Users have a few favourite clusters (a sparse Dirichlet taste) and a
lognormal number of distinct tracks (median `median_tracks`). A user's plays come in sessions: within a
session the next track comes from the same artist with probability `session_continuity`, else from a cluster
drawn from the user's taste. Timestamps span `months` months (30 days each) ending at `end`; the last month
holds the new releases: `new_track_share` of the tracks are released then (a `new_artist_share` of the artists
release only then), so a time split at the last month has hot, semi-cold and cold test plays.

Ids encode the structure the `synthetic` backbone needs to draw vectors (`embedders.synthetic`): a track id
is `c<cluster>_a<artist>_t<track>` (zero-padded).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from catalog.schemas import validate_table


@dataclass(frozen=True)
class ScaleConfig:
    """Sizes and randomness of a synthetic scale catalog."""

    n_tracks: int = 2_000
    n_artists: int = 200
    n_clusters: int = 20
    n_users: int = 500
    median_tracks: float = 60.0  # median distinct tracks per user (lognormal)
    activity_sigma: float = 0.8  # lognormal sigma of tracks per user
    zipf: float = 1.1
    taste_concentration: float = 0.1  # Dirichlet alpha over clusters (small: few favourite clusters)
    session_continuity: float = 0.5
    months: int = 13
    new_track_share: float = 0.03
    new_artist_share: float = 0.02
    end: datetime = datetime(2019, 3, 1)
    seed: int = 0


PRESETS: dict[str, ScaleConfig] = {
    "small": ScaleConfig(),  # CI: seconds
    "journal": ScaleConfig(n_tracks=55_000, n_artists=8_000, n_clusters=200, n_users=21_000, median_tracks=140.0,
                           activity_sigma=1.1),
    "large": ScaleConfig(n_tracks=500_000, n_artists=60_000, n_clusters=1_000, n_users=200_000,
                         median_tracks=140.0),
}


def track_id(cluster: int, artist: int, track: int) -> str:
    return f"c{cluster:05d}_a{artist:06d}_t{track:07d}"


def parse_track_id(value: str) -> tuple[int, int, int]:
    """(cluster, artist, track) of a synthetic track id; ValueError for another id."""
    parts = value.split("_")
    if len(parts) != 3 or [p[0] for p in parts] != ["c", "a", "t"]:
        raise ValueError(f"{value!r} is not a synthetic track id (c<cluster>_a<artist>_t<track>)")
    return int(parts[0][1:]), int(parts[1][1:]), int(parts[2][1:])


def generate(config: ScaleConfig) -> dict[str, pl.DataFrame]:
    """The contract tables `tracks`, `artists`, `interactions` of a synthetic catalog (validated)."""
    rng = np.random.default_rng(config.seed)
    artist_cluster = rng.integers(0, config.n_clusters, config.n_artists)
    new_artist = rng.random(config.n_artists) < config.new_artist_share
    track_artist = np.sort(rng.integers(0, config.n_artists, config.n_tracks))
    track_cluster = artist_cluster[track_artist]
    is_new = new_artist[track_artist] | (rng.random(config.n_tracks) < config.new_track_share)
    ids = [track_id(c, a, t) for t, (c, a) in enumerate(zip(track_cluster, track_artist))]
    start = config.end - timedelta(days=30 * config.months)
    release_cut = config.end - timedelta(days=30)
    interactions = _plays(config, rng, track_artist, track_cluster, is_new, ids, start, release_cut)
    tracks = pl.DataFrame({
        "track_id": ids, "artist_id": [f"a{a:06d}" for a in track_artist], "title": ids,
        "audio_path": [""] * len(ids), "duration_s": np.zeros(len(ids), np.float32),
        "sample_rate": np.zeros(len(ids), np.int32), "channels": np.zeros(len(ids), np.int8),
        "sha256": [""] * len(ids), "batch": np.where(is_new, "new", "catalog").tolist(),
        "tags": [[] for _ in ids], "caption": [None] * len(ids),
    }, schema_overrides={"tags": pl.List(pl.String), "caption": pl.String})
    artists = pl.DataFrame({"artist_id": [f"a{a:06d}" for a in range(config.n_artists)],
                            "name": [f"artist {a}" for a in range(config.n_artists)]})
    return {name: pl.from_arrow(validate_table(table.to_arrow(), name))
            for name, table in (("tracks", tracks), ("artists", artists), ("interactions", interactions))}


def _plays(config: ScaleConfig, rng: np.random.Generator, track_artist: np.ndarray, track_cluster: np.ndarray,
           is_new: np.ndarray, ids: list[str], start: datetime, release_cut: datetime) -> pl.DataFrame:
    """One row per user x track (first play), sampled per user in sessions (module docstring)."""
    n = len(ids)
    rank_in_cluster = np.empty(n, np.int64)
    by_cluster = [np.flatnonzero(track_cluster == c) for c in range(config.n_clusters)]
    by_artist = [np.flatnonzero(track_artist == a) for a in range(config.n_artists)]
    for members in by_cluster:
        rank_in_cluster[rng.permutation(members)] = np.arange(1, len(members) + 1)
    weight = 1.0 / rank_in_cluster ** config.zipf
    cluster_cdf = [np.cumsum(weight[m]) / weight[m].sum() if len(m) else np.zeros(0) for m in by_cluster]
    span_s = (release_cut - start).total_seconds()
    last_month_s = 30 * 86400.0
    users, tracks, seconds = [], [], []
    sizes = np.maximum(1, rng.lognormal(np.log(config.median_tracks), config.activity_sigma, config.n_users))
    for user, size in enumerate(sizes.astype(int)):
        taste = rng.dirichlet(np.full(config.n_clusters, config.taste_concentration))
        draws = int(size * 1.3) + 5
        clusters = rng.choice(config.n_clusters, draws, p=taste)
        picked = np.empty(draws, np.int64)
        for i, cluster in enumerate(clusters):
            if i and rng.random() < config.session_continuity:
                same = by_artist[track_artist[picked[i - 1]]]
                picked[i] = same[rng.integers(len(same))]
            elif len(by_cluster[cluster]):
                picked[i] = by_cluster[cluster][np.searchsorted(cluster_cdf[cluster], rng.random())]
            else:
                picked[i] = rng.integers(n)
        chosen = picked[np.sort(np.unique(picked, return_index=True)[1])][:size]
        when = np.where(is_new[chosen], span_s + rng.random(len(chosen)) * last_month_s,
                        rng.random(len(chosen)) * (span_s + last_month_s))
        users.append(np.full(len(chosen), user))
        tracks.append(chosen)
        seconds.append(when)
    users_all, tracks_all, seconds_all = (np.concatenate(x) for x in (users, tracks, seconds))
    timestamps = (np.datetime64(start, "us") + (seconds_all * 1e6).astype("timedelta64[us]"))
    return pl.DataFrame({
        "user_id": [f"u{u:06d}" for u in users_all], "track_id": [ids[t] for t in tracks_all],
        "timestamp": timestamps, "count": np.ones(len(users_all), np.int32),
    }).sort("user_id", "timestamp", "track_id")


def preset(name: str, **overrides) -> ScaleConfig:
    """A preset (`PRESETS`) with some fields replaced; KeyError naming the presets."""
    if name not in PRESETS:
        raise KeyError(f"unknown scale preset {name!r}; presets: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
