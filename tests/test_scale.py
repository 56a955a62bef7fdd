"""The synthetic scale catalog: the planted structure holds (Zipf popularity, lognormal activity, new tracks
and artists only in the last month), and the `small` preset runs end to end through Dagster, where content on
the planted vectors beats its random twin and the report covers hot and cold start."""
from __future__ import annotations

from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO_ROOT

from assets.experiment import parse_experiment
from catalog.scale import generate, parse_track_id, preset
from embedders.synthetic import SyntheticEmbedder
from pipelines.run import run_experiment


@pytest.fixture(scope="module")
def small():
    return generate(preset("small"))


def test_planted_structure(small):
    plays, tracks = small["interactions"], small["tracks"]
    per_user = plays.group_by("user_id").len()["len"]
    assert 45 <= per_user.median() <= 75  # lognormal around the preset's median of 60
    counts = plays.group_by("track_id").len().sort("len", descending=True)["len"].to_numpy()
    assert counts[: len(counts) // 10].sum() > 0.25 * counts.sum()  # a popular head (uniform: 0.1)
    last_month = plays["timestamp"].max() - timedelta(days=30)
    new = set(tracks.filter(pl.col("batch") == "new")["track_id"])
    first_plays = plays.group_by("track_id").agg(pl.col("timestamp").min())
    assert (first_plays.filter(pl.col("track_id").is_in(list(new)))["timestamp"] >= last_month).all()
    assert len(new) > 0 and plays["timestamp"].min() < last_month - timedelta(days=300)
    assert {parse_track_id(t)[1] for t in tracks["track_id"]} == {int(a[1:]) for a in tracks["artist_id"]}


def test_synthetic_vectors_carry_the_cluster(small):
    ids = small["tracks"]["track_id"].to_list()[:400]
    vectors, missing = SyntheticEmbedder(dim=32).embed_ids(ids + ["not-synthetic"])
    assert list(missing) == ["not-synthetic"]
    clusters = np.array([parse_track_id(t)[0] for t in ids])
    unit = vectors[:-1] / np.linalg.norm(vectors[:-1], axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = clusters[:, None] == clusters[None, :]
    assert cosine[same].mean() > cosine[~same].mean() + 0.3


@pytest.mark.slow
def test_small_preset_end_to_end(tmp_path):
    data = yaml.safe_load((REPO_ROOT / "experiments" / "journal_scale.yaml").read_text())
    data.update(storage=str(tmp_path / "out"), catalog={"kind": "synthetic", "preset": "small"},
                backbones={"random": {"dim": 32}, "planted": {"backbone": "synthetic", "dim": 32}},
                recommenders={"knn": {}, "shallow": {"max_epochs": 2}}, baselines=["popularity", "elsa"],
                serve={"recommender": "knn", "backbone": "planted", "k": 10})
    experiment = parse_experiment(data, base=tmp_path)
    run_experiment(experiment, dg.DagsterInstance.ephemeral(), say=lambda _: None)
    metrics = pl.read_parquet(tmp_path / "out" / "tables" / "metrics.parquet").filter(
        (pl.col("metric") == "ndcg") & (pl.col("k") == 50))
    ndcg = {(r["recommender"], r["backbone"]): r["value"] for r in metrics.iter_rows(named=True)}
    assert ndcg[("knn", "planted")] > 1.5 * ndcg[("knn", "random")]
    assert ndcg[("elsa", "none")] > ndcg[("popularity", "none")]
    cold = pl.read_parquet(tmp_path / "out" / "tables" / "cold_start_table.parquet")
    assert {"semi_cold", "cold"} <= set(cold["scenario"])
    assert (tmp_path / "out" / "reports" / "report.md").exists()
