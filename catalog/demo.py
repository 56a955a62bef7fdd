"""The demo catalog: real Bach chorales from the music21 corpus, played by virtual artists with audible
signatures, and simulated listeners whose choices depend on what the music sounds like.

Everything is deterministic given `DemoConfig.seed`. The generator writes, under one root folder:
`audio/<batch>/<track_id>.flac`, `metadata.csv` (consumed by `catalog.ingest.ingest_folder`), and the tables
`tracks`, `artists`, `interactions`, `artist_edges`, `queries`, `failures` as Parquet.

Latent attributes (all audible): instrument family (timbre), tempo class, register (transposition) and drum
pattern per artist; the mode (major/minor) of each piece. Listeners have tastes over those attributes, a
popularity bias and session continuity (they often stay with the artist they just played).
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf

from catalog.demo_music import Composition, RenderStyle, corpus_work_paths, load_composition, render
from catalog.ingest import ingest_folder
from catalog.io import atomic_path, write_json, write_table

log = logging.getLogger(__name__)

# instrument family -> (GM programs per voice, tag, words used in captions)
FAMILIES: dict[str, tuple[tuple[int, ...], str]] = {
    "piano": ((0,), "piano"),
    "strings": ((40, 41, 42, 43), "strings"),
    "choir": ((52,), "choir"),
    "organ": ((19,), "organ"),
    "brass": ((56, 60, 57, 58), "brass"),
    "woodwinds": ((73, 68, 71, 70), "woodwinds"),
    "guitar": ((24,), "guitar"),
    "mallets": ((12,), "mallets"),
    "harpsichord": ((6,), "harpsichord"),
    "synth": ((81, 81, 88, 38), "synth"),
}
TEMPI = {"slow": (58.0, 72.0), "medium": (88.0, 108.0), "fast": (126.0, 150.0)}
TEMPO_MOOD = {"slow": "calm", "medium": "steady", "fast": "energetic"}
REGISTERS = {"low": -12, "mid": 0, "high": 12}
DRUMS = ("none", "light", "driving")
MODE_MOOD = {"major": "bright", "minor": "melancholic"}
EPOCH = datetime(2024, 1, 1)


@dataclass(frozen=True)
class DemoConfig:
    """Size and randomness of the demo catalog. Defaults build in about a minute on 2 cores."""

    seed: int = 0
    n_artists: int = 32
    tracks_per_artist: int = 12
    n_pieces: int = 200  # distinct chorales; artists "cover" the same works, so timbre, not score, tells them apart
    n_users: int = 1000
    mean_plays_per_user: float = 40.0
    n_batches: int = 4  # catalog batches, released at evenly spaced days
    days: int = 56  # length of the listening history
    clip_seconds: float = 10.0
    sample_rate: int = 22050
    taste_sharpness: float = 2.5  # weight of taste in the listeners' choice (higher: more predictable)
    session_continuity: float = 0.35  # probability that the next play stays with the same artist

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Artist:
    artist_id: str
    name: str
    family: str
    tempo: str
    register: str
    drums: str
    popularity: float


def make_artists(config: DemoConfig, rng: np.random.Generator) -> list[Artist]:
    families = list(FAMILIES)
    order = rng.permutation(len(families))
    artists = []
    for i in range(config.n_artists):
        artists.append(Artist(
            artist_id=f"a{i:03d}",
            name=f"The {['Quiet', 'Bright', 'Velvet', 'Iron', 'Paper', 'Golden', 'Hollow', 'Silver'][i % 8]} "
                 f"{['Lanterns', 'Rivers', 'Engines', 'Gardens', 'Owls', 'Chorales'][i % 6]} {i}",
            family=families[order[i % len(families)]],
            tempo=str(rng.choice(list(TEMPI))),
            register=str(rng.choice(list(REGISTERS))),
            drums=str(rng.choice(DRUMS, p=[0.5, 0.25, 0.25])),
            popularity=float(rng.lognormal(0.0, 0.8)),
        ))
    return artists


def track_tags(artist: Artist, mode: str) -> list[str]:
    tags = [FAMILIES[artist.family][1], artist.tempo, TEMPO_MOOD[artist.tempo], f"{artist.register} register",
            MODE_MOOD[mode], "chorale"]
    if artist.drums != "none":
        tags += ["drums", "beat" if artist.drums == "driving" else "soft percussion"]
    return tags


def track_caption(artist: Artist, piece: Composition) -> str:
    drums = {"none": "There are no drums.", "light": "A light drum groove keeps time.",
             "driving": "A driving drum beat pushes it forward."}[artist.drums]
    return (f"A {artist.tempo}, {TEMPO_MOOD[artist.tempo]} {FAMILIES[artist.family][1]} arrangement of the "
            f"chorale {piece.title} in a {artist.register} register. "
            f"The harmony sounds {MODE_MOOD[piece.mode]}. {drums}")


def simulate_listening(
    config: DemoConfig, rng: np.random.Generator, artists: list[Artist], tracks: list[dict]
) -> pl.DataFrame:
    """Listening events (`interactions` contract): users with tastes over audible attributes, artist
    popularity, release dates and session continuity; one row per user×track (first play, count = plays)."""
    by_id = {a.artist_id: a for a in artists}
    n_tracks = len(tracks)
    attr = {
        "family": np.array([list(FAMILIES).index(by_id[t["artist_id"]].family) for t in tracks]),
        "tempo": np.array([list(TEMPI).index(by_id[t["artist_id"]].tempo) for t in tracks]),
        "register": np.array([list(REGISTERS).index(by_id[t["artist_id"]].register) for t in tracks]),
        "drums": np.array([DRUMS.index(by_id[t["artist_id"]].drums) for t in tracks]),
        "mode": np.array([0 if t["mode"] == "major" else 1 for t in tracks]),
    }
    sizes = {"family": len(FAMILIES), "tempo": 3, "register": 3, "drums": 3, "mode": 2}
    weights = {"family": 1.0, "tempo": 0.6, "register": 0.5, "drums": 0.6, "mode": 0.3}
    log_popularity = np.log([by_id[t["artist_id"]].popularity * t["quality"] for t in tracks])
    release_day = np.array([t["release_day"] for t in tracks], dtype=float)
    artist_of = np.array([t["artist_id"] for t in tracks])

    rows = []
    for u in range(config.n_users):
        utility = 0.6 * log_popularity.copy()
        for name, size in sizes.items():
            preference = np.log(rng.dirichlet(np.full(size, 0.35)) + 1e-3)
            utility += config.taste_sharpness * weights[name] * preference[attr[name]]
        n_plays = max(3, int(rng.lognormal(np.log(config.mean_plays_per_user), 0.6)))
        session_starts = np.sort(rng.uniform(0, config.days, size=max(1, n_plays // 5)))
        played = np.zeros(n_tracks, bool)
        previous: int | None = None
        for _s, start in enumerate(session_starts):
            for j in range(int(rng.integers(2, 9))):
                if played.sum() >= min(n_plays, n_tracks - 1):
                    break
                day = start + j * config.clip_seconds * 6 / 86400.0
                available = (release_day <= day) & ~played
                if not available.any():
                    break
                if previous is not None and j > 0 and rng.random() < config.session_continuity:
                    same = available & (artist_of == artist_of[previous])
                    if same.any():
                        available = same
                scores = np.where(available, utility, -np.inf)
                p = np.exp(scores - scores.max())
                choice = int(rng.choice(n_tracks, p=p / p.sum()))
                played[choice] = True
                previous = choice
                plays = 1 + int(rng.poisson(2.0 / (1.0 + np.exp(-(utility[choice] - np.median(utility))))))
                rows.append((f"u{u:04d}", tracks[choice]["track_id"], EPOCH + timedelta(days=float(day)), plays))
            previous = None
    frame = pl.DataFrame(rows, schema={"user_id": pl.String, "track_id": pl.String,
                                       "timestamp": pl.Datetime("us"), "count": pl.Int32}, orient="row")
    return frame.sort(["timestamp", "user_id", "track_id"])


def make_artist_edges(artists: list[Artist], rng: np.random.Generator) -> pl.DataFrame:
    """Undirected similarity edges from shared latent attributes (family counts double), plus a few random."""
    edges = []
    for i, a in enumerate(artists):
        for b in artists[i + 1:]:
            shared = (2 * (a.family == b.family) + (a.tempo == b.tempo) + (a.register == b.register)
                      + (a.drums == b.drums))
            if shared >= 3 or rng.random() < 0.02:
                edges.append((a.artist_id, b.artist_id))
    return pl.DataFrame(edges, schema={"src": pl.String, "dst": pl.String}, orient="row")


def make_queries(artists: list[Artist], tracks: list[dict]) -> pl.DataFrame:
    """Natural-language queries over (family, tempo) and (family, drums) combinations; relevant = tracks."""
    by_id = {a.artist_id: a for a in artists}
    rows = []
    for family, (_, word) in FAMILIES.items():
        for tempo in TEMPI:
            relevant = [t["track_id"] for t in tracks
                        if by_id[t["artist_id"]].family == family and by_id[t["artist_id"]].tempo == tempo]
            if relevant:
                rows.append((f"q{len(rows):03d}", f"{TEMPO_MOOD[tempo]} {word} music at a {tempo} tempo", relevant))
        with_drums = [t["track_id"] for t in tracks
                      if by_id[t["artist_id"]].family == family and by_id[t["artist_id"]].drums != "none"]
        if with_drums:
            rows.append((f"q{len(rows):03d}", f"{word} with a drum beat", with_drums))
    return pl.DataFrame(rows, schema={"query_id": pl.String, "text": pl.String,
                                      "relevant": pl.List(pl.String)}, orient="row")


def build_demo_catalog(root: str | Path, config: DemoConfig = DemoConfig()) -> Path:
    """Generate the demo catalog under `root` (skipped when `root/demo_config.json` already matches `config`).
    Returns `root`."""
    root = Path(root)
    stamp = root / "demo_config.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == config.fingerprint():
        log.info("demo catalog at %s is up to date (fingerprint %s)", root, config.fingerprint())
        return root
    rng = np.random.default_rng(config.seed)
    works = corpus_work_paths("bach")
    chosen = [works[i] for i in sorted(rng.choice(len(works), size=min(config.n_pieces, len(works)), replace=False))]
    pieces: list[Composition] = []
    for path in chosen:
        try:
            pieces.append(load_composition(path))
        except ValueError as exc:
            log.warning("skipping corpus work: %s", exc)
    log.info("loaded %d chorales from the music21 corpus", len(pieces))
    artists = make_artists(config, rng)
    batch_days = np.linspace(0, config.days * 0.85, config.n_batches)
    tracks: list[dict] = []
    for artist in artists:
        for piece_index in rng.choice(len(pieces), size=config.tracks_per_artist, replace=False):
            batch = int(rng.choice(config.n_batches, p=_batch_weights(config.n_batches)))
            tracks.append({"artist_id": artist.artist_id, "piece": pieces[int(piece_index)], "batch": batch,
                           "release_day": float(batch_days[batch]), "quality": float(rng.lognormal(0, 0.5)),
                           "transpose": REGISTERS[artist.register] + int(rng.integers(-3, 4)),
                           "tempo_bpm": float(rng.uniform(*TEMPI[artist.tempo]))})
    order = rng.permutation(len(tracks))
    tracks = [tracks[i] for i in order]
    for i, track in enumerate(tracks):
        track["track_id"] = f"t{i:05d}"
        track["mode"] = track["piece"].mode
    by_id = {a.artist_id: a for a in artists}

    metadata_rows = []
    for done, track in enumerate(tracks, start=1):
        artist = by_id[track["artist_id"]]
        style = RenderStyle(FAMILIES[artist.family][0], track["tempo_bpm"], track["transpose"], artist.drums)
        audio = render(track["piece"], style, config.sample_rate, config.clip_seconds)
        relative = Path("audio") / f"b{track['batch']:03d}" / f"{track['track_id']}.flac"
        with atomic_path(root / relative, suffix=".flac") as tmp:
            sf.write(str(tmp), audio, config.sample_rate, format="FLAC")
        metadata_rows.append({
            "audio_path": relative.as_posix(), "track_id": track["track_id"],
            "artist_id": artist.artist_id, "title": f"{track['piece'].title} ({artist.name})",
            "batch": f"b{track['batch']:03d}", "tags": ";".join(track_tags(artist, track["mode"])),
            "caption": track_caption(artist, track["piece"]),
        })
        if done % 50 == 0 or done == len(tracks):
            log.info("rendered %d/%d demo tracks", done, len(tracks))
    with atomic_path(root / "metadata.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(metadata_rows[0]))
            writer.writeheader()
            writer.writerows(metadata_rows)

    ingested = ingest_folder(root, root / "metadata.csv")
    write_table(ingested.tracks, "tracks", root / "tracks.parquet")
    write_table(ingested.failures, "failures", root / "failures.parquet")
    write_table(pl.DataFrame([(a.artist_id, a.name) for a in artists], schema=["artist_id", "name"], orient="row"),
                "artists", root / "artists.parquet")
    write_table(simulate_listening(config, rng, artists, tracks), "interactions", root / "interactions.parquet")
    write_table(make_artist_edges(artists, rng), "artist_edges", root / "artist_edges.parquet")
    write_table(make_queries(artists, tracks), "queries", root / "queries.parquet")
    write_json({"fingerprint": config.fingerprint(), "config": asdict(config)}, stamp)
    return root


def _batch_weights(n_batches: int) -> np.ndarray:
    """Most of the catalog is in the first batch; later batches are smaller releases."""
    weights = np.array([3.0] + [1.0] * (n_batches - 1))
    return weights / weights.sum()
