"""A tiny Music4All-Onion data set written in the real file formats, with a planted content signal.

Files: `userid_trackid_timestamp.tsv` (tab-separated `user_id`, `track_id`, `timestamp` "YYYY-MM-DD HH:MM:SS",
one row per play), `id_information.csv` (tab-separated `id`, `artist`, `song`, `album_name`) and a feature file
`id_blf_test.tsv` in the style of `id_ivec256.tsv` (tab-separated `id`, `f0` .. `f15`).

World. The last `NEW_ARTISTS` artists are new: they appear only in February 2019. `n_tracks * 3 // 16` tracks
(15 of 80) are new: never played before 2019-02-01; 2/5 of them are by the new artists (cold), the rest by known
artists (semi-cold). Each known artist has a feature centroid; a track's vector is its artist's centroid plus
small noise, and a new artist's centroid lies near the centroid of a known "parent" artist. Each user has 1-2
favourite known artists and plays them (or the new artists they parent) most of the time, so content predicts
listening, hot and cold. Training plays span 2018-01-15 .. 2019-01-31 and cover every known track within the
last 365 days; the test month 2019-02-01 .. 2019-02-27 holds hot plays (known tracks the user did not play in
training) and plays of every new track, all by known users.
"""
from __future__ import annotations

import string
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

NEW_ARTISTS = 2
DIM = 16
TRAIN_SPAN = (datetime(2018, 1, 15), datetime(2019, 2, 1))  # [start, end)
TRAIN_WINDOW = (datetime(2018, 2, 1), TRAIN_SPAN[1])  # the 365 training days before the test month
TEST_SPAN = (datetime(2019, 2, 1), datetime(2019, 2, 28))
TRAIN_PLAYS = (20, 40)  # per user, [low, high)
TEST_HOT_PLAYS = (2, 6)
TEST_NEW_PLAYS = (1, 4)
FAVOURITE_SHARE = 0.85  # chance that a play goes to a favourite artist
SEEN_SHARE = 0.5  # share of the known tracks a user may play in training; the rest may be hot discoveries
ALPHABET = np.array(list(string.ascii_letters + string.digits))


def _ids(rng: np.random.Generator, n: int, length: int = 16, prefix: str = "") -> list[str]:
    """`n` distinct random alphanumeric ids of `length` characters (Music4All style), after `prefix`."""
    ids: list[str] = []
    while len(ids) < n:
        candidate = prefix + "".join(rng.choice(ALPHABET, length))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def _artists_of_tracks(n_tracks: int, n_artists: int) -> tuple[np.ndarray, np.ndarray]:
    """(artist index per track, whether the track is new). Known tracks go round-robin over the known artists,
    new ones first to the new artists (2/5 of them) then round-robin over the known artists."""
    n_known_artists = n_artists - NEW_ARTISTS
    n_new = n_tracks * 3 // 16
    n_cold = n_new * 2 // 5
    n_old = n_tracks - n_new
    if n_known_artists < 2 or n_cold < NEW_ARTISTS or n_old < n_known_artists:
        raise ValueError(f"fixture too small: {n_tracks} tracks, {n_artists} artists")
    artist = np.concatenate([
        np.arange(n_old) % n_known_artists,
        n_known_artists + np.arange(n_cold) % NEW_ARTISTS,
        np.arange(n_new - n_cold) % n_known_artists,
    ])
    return artist, np.arange(n_tracks) >= n_old


def _random_times(rng: np.random.Generator, span: tuple[datetime, datetime], n: int) -> list[str]:
    """`n` uniform random whole-second times in `span` ([start, end)), as "YYYY-MM-DD HH:MM:SS"."""
    seconds = rng.integers(0, int((span[1] - span[0]).total_seconds()), n)
    return [(span[0] + timedelta(seconds=int(s))).strftime("%Y-%m-%d %H:%M:%S") for s in seconds]


def _pick_tracks(rng: np.random.Generator, pool: np.ndarray, family: np.ndarray, favourites: np.ndarray, n: int
                 ) -> np.ndarray:
    """`n` tracks of `pool` (track indices): each from the user's favourite families with FAVOURITE_SHARE chance
    (when the pool has any), else uniform over the pool. `family` maps a track to its (parent) artist."""
    liked = pool[np.isin(family[pool], favourites)]
    from_liked = (rng.random(n) < FAVOURITE_SHARE) & (liked.size > 0)
    return np.where(from_liked, rng.choice(liked if liked.size else pool, n), rng.choice(pool, n))


def _cover(rng: np.random.Generator, plays: list[tuple[str, int, str]], tracks: np.ndarray, users: list[str],
           span: tuple[datetime, datetime]) -> list[tuple[str, int, str]]:
    """One play in `span` by a random user for each of `tracks` that has no play in `span` yet."""
    start, end = (t.strftime("%Y-%m-%d %H:%M:%S") for t in span)
    played = {track for _, track, time in plays if start <= time < end}
    missing = [int(t) for t in tracks if t not in played]
    return list(zip(rng.choice(users, len(missing)).tolist(), missing, _random_times(rng, span, len(missing))))


def write_music4all_fixture(folder: Path, n_users: int = 60, n_tracks: int = 80, n_artists: int = 12,
                            seed: int = 0) -> dict[str, Path]:
    """Write the fixture under `folder` (see the module docstring); deterministic given `seed`. `n_tracks` and
    `n_artists` include the new ones. Returns the paths under "listening", "information" and "features"."""
    rng = np.random.default_rng(seed)
    artist, is_new = _artists_of_tracks(n_tracks, n_artists)
    n_known = n_artists - NEW_ARTISTS
    parent = np.concatenate([np.arange(n_known), rng.choice(n_known, NEW_ARTISTS, replace=False)])
    centroid = rng.normal(size=(n_known, DIM))[parent]
    centroid[n_known:] += rng.normal(scale=0.3, size=(NEW_ARTISTS, DIM))
    vectors = centroid[artist] + rng.normal(scale=0.15, size=(n_tracks, DIM))
    track_ids, user_ids = _ids(rng, n_tracks), _ids(rng, n_users, 8, "user_")
    artist_names = [f"Fixture Artist {a:02d}" for a in range(n_artists)]
    family = parent[artist]

    old, new = np.flatnonzero(~is_new), np.flatnonzero(is_new)
    plays: list[tuple[str, int, str]] = []
    for user in user_ids:
        favourites = rng.choice(n_known, rng.integers(1, 3), replace=False)
        seen = rng.random(n_tracks) < SEEN_SHARE
        for pool, span, (low, high) in ((old[seen[old]], TRAIN_SPAN, TRAIN_PLAYS),
                                        (old[~seen[old]], TEST_SPAN, TEST_HOT_PLAYS),
                                        (new, TEST_SPAN, TEST_NEW_PLAYS)):
            n = int(rng.integers(low, high)) if pool.size else 0
            plays += zip([user] * n, _pick_tracks(rng, pool, family, favourites, n), _random_times(rng, span, n))
    plays += _cover(rng, plays, old, user_ids, TRAIN_WINDOW) + _cover(rng, plays, new, user_ids, TEST_SPAN)

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"listening": folder / "userid_trackid_timestamp.tsv", "information": folder / "id_information.csv",
             "features": folder / "id_blf_test.tsv"}
    order = rng.permutation(len(plays))  # shuffled: readers must not rely on the row order
    paths["listening"].write_text("user_id\ttrack_id\ttimestamp\n" + "".join(
        f"{plays[i][0]}\t{track_ids[plays[i][1]]}\t{plays[i][2]}\n" for i in order))
    paths["information"].write_text("id\tartist\tsong\talbum_name\n" + "".join(
        f"{t}\t{artist_names[a]}\tSong {i}\tAlbum {a:02d}\n" for i, (t, a) in enumerate(zip(track_ids, artist))))
    paths["features"].write_text("id\t" + "\t".join(f"f{d}" for d in range(DIM)) + "\n" + "".join(
        t + "\t" + "\t".join(f"{x:.6f}" for x in v) + "\n" for t, v in zip(track_ids, vectors)))
    return paths
