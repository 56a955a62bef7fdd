"""Only stale stages rerun: a new catalog batch embeds only itself and retrains the models below it once;
a backbone's code-version bump reruns only that backbone's branch. Checked through Dagster's own automation
condition evaluation on a real (ephemeral) instance and a tiny folder catalog."""
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf

from assets.experiment import Experiment
from catalog.io import write_table
from embedders.handcrafted import HandcraftedEmbedder
from pipelines.automation_eval import run_assets, stale_assets
from pipelines.definitions import build_definitions
from pipelines.resources import CatalogResource

SAMPLE_RATE = 16000
# tones carry no tags, artists or release dates: only the hot matrix applies to this catalog
EXPERIMENT = Experiment(backbones=("random", "handcrafted"), content_recommenders=("knn", "shallow"),
                        cf_baselines=("popularity",), studies=("hot",),
                        options={"shallow": {"max_epochs": 2, "patience": 1}})


def write_tone(path: Path, frequency: float, seconds: float = 1.5) -> None:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), SAMPLE_RATE)


def make_folder_catalog(root: Path) -> Path:
    """Two batches of tones (low and high), and listeners who each prefer one register. Returns the
    interactions Parquet path (track ids are `<batch>/<name>` as ingestion derives them)."""
    tracks = []
    for batch in ("b000", "b001"):
        for i in range(6):
            frequency = 110.0 * (1 + i % 3) if i < 3 else 1760.0 * (1 + i % 3)
            write_tone(root / batch / f"tone{i}.wav", frequency)
            tracks.append((f"{batch}/tone{i}", i < 3))
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        likes_low = u % 2 == 0
        liked = [t for t, low in tracks if low == likes_low]
        for j, track in enumerate(rng.permutation(liked)[:5]):
            rows.append((f"u{u:02d}", str(track), datetime(2024, 1, 1) + timedelta(days=int(j * 7 + rng.integers(0, 3))), 1))
    interactions = pl.DataFrame(rows, schema=["user_id", "track_id", "timestamp", "count"], orient="row")
    return write_table(interactions.with_columns(pl.col("timestamp").cast(pl.Datetime("us"))), "interactions",
                       root.parent / "interactions.parquet")


def embedded_batches(result, backbone: str) -> list[str]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(f"embeddings_{backbone}"):
            return list(event.materialization.metadata["embedded_batches"].value)
    raise AssertionError(f"embeddings_{backbone} was not materialised")


@pytest.fixture()
def catalog_setup(tmp_path: Path):
    folder = tmp_path / "catalog"
    interactions = make_folder_catalog(folder)
    catalog = CatalogResource(source="folder", folder=str(folder), interactions=str(interactions))
    return folder, catalog, str(tmp_path / "storage")


def test_new_batch_embeds_only_itself_and_retrains_downstream_once(catalog_setup):
    folder, catalog, storage = catalog_setup
    defs = build_definitions(storage, catalog, EXPERIMENT)
    instance = dg.DagsterInstance.ephemeral()
    first = run_assets(defs, "demo", instance)
    assert embedded_batches(first, "handcrafted") == ["b000", "b001"]
    nothing, cursor = stale_assets(defs, instance)
    assert nothing == set()

    write_tone(folder / "b002" / "tone0.wav", 330.0)
    write_tone(folder / "b002" / "tone1.wav", 3520.0)
    embed_run = run_assets(defs, "embed", instance)  # what the new-batch sensor launches
    assert embedded_batches(embed_run, "handcrafted") == ["b002"]
    assert embedded_batches(embed_run, "random") == ["b002"]

    stale, cursor = stale_assets(defs, instance, cursor)
    content_branch = {f"{kind}_{r}__{b}" for kind in ("model", "eval") for r in ("knn", "shallow")
                      for b in ("random", "handcrafted")}
    assert stale == content_branch | {"per_user_metrics_all", "metrics", "significance", "report"}
    # interactions did not change, so neither the split nor the pure-CF baseline is stale
    assert not stale & {"hot_train", "model_popularity__none", "eval_popularity__none"}

    rerun = run_assets(defs, "demo", instance, stale)
    refit = {event.asset_key.to_user_string(): event.materialization.metadata["refit"].value
             for event in rerun.get_asset_materialization_events() if "refit" in event.materialization.metadata}
    # the new tones have no plays: shallow, which reads only played tracks' vectors, reuses its saved model;
    # knn's index holds every track, so it takes the new ones in
    assert refit == {"model_knn__random": True, "model_knn__handcrafted": True,
                     "model_shallow__random": False, "model_shallow__handcrafted": False}
    again, _ = stale_assets(defs, instance, cursor)
    assert again == set()  # retrained once, then quiet


def test_code_version_bump_reruns_only_that_backbone(catalog_setup, monkeypatch):
    _, catalog, storage = catalog_setup
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(storage, catalog, EXPERIMENT)
    run_assets(defs, "demo", instance)
    _, cursor = stale_assets(defs, instance)

    monkeypatch.setattr(HandcraftedEmbedder, "version", "2-test")
    bumped = build_definitions(storage, catalog, EXPERIMENT)
    stale, _ = stale_assets(bumped, instance, cursor)
    assert "embeddings_handcrafted" in stale
    assert {"model_knn__handcrafted", "eval_knn__handcrafted", "report"} <= stale
    assert not stale & {"embeddings_random", "model_knn__random", "eval_knn__random", "hot_train", "tracks"}
