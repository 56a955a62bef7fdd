"""The tiny demo catalog: deterministic, valid, causally ordered, audible, and artists sound different."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from catalog.demo import EPOCH, FAMILIES, build_demo_catalog
from catalog.io import read_table
from catalog.schemas import check_references

TABLES = ("tracks", "artists", "interactions", "artist_edges", "queries", "failures")


def load(root):
    return {name: read_table(root / f"{name}.parquet", name) for name in TABLES}  # read_table validates


def test_tables_are_valid_and_sized_by_the_config(tiny_catalog, tiny_config):
    tables = load(tiny_catalog)
    tracks = tables["tracks"]
    assert tracks.height == tiny_config.n_artists * tiny_config.tracks_per_artist
    assert tables["failures"].height == 0
    assert tables["artists"]["artist_id"].to_list() == [f"a{i:03d}" for i in range(tiny_config.n_artists)]
    assert set(tracks["artist_id"]) == set(tables["artists"]["artist_id"])
    assert tracks.group_by("artist_id").len()["len"].to_list() == [tiny_config.tracks_per_artist] * 4
    assert set(tracks["batch"]) == {"b000", "b001"}
    assert tracks["sample_rate"].unique().to_list() == [tiny_config.sample_rate]
    assert tracks["duration_s"].to_numpy() == pytest.approx(tiny_config.clip_seconds, abs=1e-3)
    interactions = tables["interactions"]
    assert interactions["user_id"].n_unique() == tiny_config.n_users
    assert (interactions["count"] >= 1).all()
    known_artists = set(tables["artists"]["artist_id"])
    check_references(tables["artist_edges"].to_arrow(), "src", known_artists, "artist_edges", "artists")
    check_references(tables["artist_edges"].to_arrow(), "dst", known_artists, "artist_edges", "artists")


def test_every_interaction_references_a_known_track_after_its_release(tiny_catalog, tiny_config):
    tables = load(tiny_catalog)
    tracks, interactions = tables["tracks"], tables["interactions"]
    check_references(interactions.to_arrow(), "track_id", set(tracks["track_id"]), "interactions", "tracks")
    batch_days = np.linspace(0, tiny_config.days * 0.85, tiny_config.n_batches)
    release = {r["track_id"]: EPOCH + timedelta(days=float(batch_days[int(r["batch"][1:])]))
               for r in tracks.iter_rows(named=True)}
    late = [r for r in interactions.iter_rows(named=True) if r["timestamp"] < release[r["track_id"]]]
    assert late == []
    assert interactions["timestamp"].min() >= EPOCH
    assert interactions["timestamp"].max() <= EPOCH + timedelta(days=tiny_config.days + 1)
    # the later batch is played too (after its release), so the time split has new plays to test
    later_batch = set(tracks.filter(pl.col("batch") == "b001")["track_id"])
    assert interactions.filter(pl.col("track_id").is_in(sorted(later_batch))).height > 0


def test_tags_and_captions_describe_the_artist(tiny_catalog):
    tables = load(tiny_catalog)
    tracks = tables["tracks"]
    assert tracks["caption"].null_count() == 0
    family_tags = {tag for _, tag in FAMILIES.values()}
    for row in tracks.iter_rows(named=True):
        assert "chorale" in row["tags"] and len(row["tags"]) >= 6
        family = row["tags"][0]
        assert family in family_tags and family in row["caption"]
    # one family per artist, and a query's relevant tracks carry its family tag
    assert tracks.select(pl.col("tags").list.first().n_unique().over("artist_id")).to_series().max() == 1
    tags = dict(zip(tracks["track_id"], tracks["tags"].to_list()))
    queries = tables["queries"]
    assert queries.height > 0
    for row in queries.iter_rows(named=True):
        assert row["relevant"] and set(row["relevant"]) <= set(tags)
        word = next(w for w in family_tags if w in row["text"])
        assert all(tags[t][0] == word for t in row["relevant"])


def test_audio_is_audible(tiny_catalog):
    tracks = load(tiny_catalog)["tracks"]
    for path in tracks["audio_path"]:
        audio, _ = sf.read(str(tiny_catalog / path), dtype="float32")
        assert np.abs(audio).max() > 0.5  # peak-normalised to 0.9, quantised by FLAC
        assert np.sqrt(np.mean(audio**2)) > 0.01, path


def test_artists_differ_in_timbre(tiny_catalog):
    """MFCC means of one artist's renders are closer to each other than to other artists' (4 distinct
    instrument families here): each track's nearest neighbour is by the same artist, and within-artist
    distances average under half the across-artist ones (measured: 2.3 vs 5.8 at seed 0)."""
    from embedders.audio import load_mono
    from embedders.handcrafted import HandcraftedEmbedder

    tracks = load(tiny_catalog)["tracks"]
    embedder = HandcraftedEmbedder()
    mfcc = embedder.embed([load_mono(tiny_catalog / p, embedder.sample_rate) for p in tracks["audio_path"]])[:, :20]
    artist = np.array(tracks["artist_id"].to_list())
    family = np.array([t[0] for t in tracks["tags"].to_list()])
    assert len(set(family)) == 4
    distance = np.linalg.norm(mfcc[:, None] - mfcc[None], axis=-1)
    same = (artist[:, None] == artist[None]) & ~np.eye(len(artist), dtype=bool)
    other_family = family[:, None] != family[None]
    assert distance[same].mean() < 0.5 * distance[other_family].mean()
    nearest = (distance + np.eye(len(artist)) * 1e9).argmin(axis=1)
    assert (artist[nearest] == artist).mean() >= 0.9


def test_deterministic_given_the_seed(tiny_catalog, tiny_config, tmp_path):
    again = build_demo_catalog(tmp_path / "again", tiny_config)
    first, second = load(tiny_catalog), load(again)
    assert first["tracks"].drop("caption").equals(second["tracks"].drop("caption"))  # sha256s included
    assert first["tracks"]["caption"].to_list() == second["tracks"]["caption"].to_list()
    assert first["interactions"].equals(second["interactions"])
    for name in ("artists", "artist_edges", "queries"):
        assert first[name].equals(second[name]), name
    assert (tiny_catalog / "metadata.csv").read_bytes() == (again / "metadata.csv").read_bytes()


def test_another_seed_gives_another_catalog(tiny_catalog, tiny_config, tmp_path):
    from dataclasses import replace

    other = load(build_demo_catalog(tmp_path / "other", replace(tiny_config, seed=1)))
    assert set(other["tracks"]["sha256"]).isdisjoint(set(load(tiny_catalog)["tracks"]["sha256"]))
    assert not other["interactions"].equals(load(tiny_catalog)["interactions"])


def test_rebuild_with_same_config_is_skipped(tiny_catalog, tiny_config):
    stamp = (tiny_catalog / "tracks.parquet").stat().st_mtime_ns
    assert build_demo_catalog(tiny_catalog, tiny_config) == tiny_catalog
    assert (tiny_catalog / "tracks.parquet").stat().st_mtime_ns == stamp
