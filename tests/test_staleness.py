"""Only stale stages rerun: a new catalog batch embeds only itself and retrains the models below it once;
a backbone's code-version bump reruns only that backbone's branch. Checked through Dagster's own automation
condition evaluation on a real (ephemeral) instance and a tiny folder catalog."""
from pathlib import Path

import dagster as dg
import pytest
from conftest import make_folder_catalog, write_tone

from assets.experiment import parse_experiment
from embedders.handcrafted import HandcraftedEmbedder
from pipelines.automation_eval import run_assets, stale_assets
from pipelines.definitions import MAIN_JOB, build_definitions


def tone_experiment(folder: Path, interactions: Path, storage: Path):
    """Tones carry no tags, artists or release dates: only the hot matrix applies to this catalog."""
    return parse_experiment({
        "name": "tones", "storage": str(storage),
        "catalog": {"kind": "folder", "folder": str(folder), "interactions": str(interactions)},
        "backbones": {"random": {}, "handcrafted": {}},
        "recommenders": {"knn": {}, "shallow": {"max_epochs": 2, "patience": 1}},
        "baselines": ["popularity"], "studies": ["hot"]})


def embedded_batches(result, backbone: str) -> list[str]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(f"embeddings_{backbone}"):
            return list(event.materialization.metadata["embedded_batches"].value)
    raise AssertionError(f"embeddings_{backbone} was not materialised")


@pytest.fixture()
def catalog_setup(tmp_path: Path):
    folder = tmp_path / "catalog"
    interactions = make_folder_catalog(folder)
    return folder, tone_experiment(folder, interactions, tmp_path / "storage")


def test_new_batch_embeds_only_itself_and_retrains_downstream_once(catalog_setup):
    folder, experiment = catalog_setup
    defs = build_definitions(experiment)
    instance = dg.DagsterInstance.ephemeral()
    first = run_assets(defs, MAIN_JOB, instance)
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
    serving = {"serving_recommendations", "serving_similar_tracks", "serving_release"}  # knn on handcrafted
    assert stale == content_branch | {"per_user_metrics_all", "metrics", "significance", "report"} | serving
    # interactions did not change, so neither the split nor the pure-CF baseline is stale
    assert not stale & {"hot_train", "model_popularity__none", "eval_popularity__none"}

    rerun = run_assets(defs, MAIN_JOB, instance, stale)
    refit = {event.asset_key.to_user_string(): event.materialization.metadata["refit"].value
             for event in rerun.get_asset_materialization_events() if "refit" in event.materialization.metadata}
    # the new tones have no plays: shallow, which reads only played tracks' vectors, reuses its saved model;
    # knn's index holds every track, so it takes the new ones in
    assert refit == {"model_knn__random": True, "model_knn__handcrafted": True,
                     "model_shallow__random": False, "model_shallow__handcrafted": False}
    again, _ = stale_assets(defs, instance, cursor)
    assert again == set()  # retrained once, then quiet


def test_code_version_bump_reruns_only_that_backbone(catalog_setup, monkeypatch):
    _, experiment = catalog_setup
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(experiment)
    run_assets(defs, MAIN_JOB, instance)
    _, cursor = stale_assets(defs, instance)

    monkeypatch.setattr(HandcraftedEmbedder, "version", "2-test")
    bumped = build_definitions(experiment)
    stale, _ = stale_assets(bumped, instance, cursor)
    assert "embeddings_handcrafted" in stale
    assert {"model_knn__handcrafted", "eval_knn__handcrafted", "report"} <= stale
    assert not stale & {"embeddings_random", "model_knn__random", "eval_knn__random", "hot_train", "tracks"}


def test_given_vectors_report_ids_outside_the_catalog_and_the_backbone_is_built_once_per_run(tmp_path, monkeypatch):
    import numpy as np
    import polars as pl

    from catalog.io import ItemVectors, write_embeddings
    from embedders.precomputed import PrecomputedEmbedder

    interactions = make_folder_catalog(tmp_path / "catalog")
    ids = sorted(pl.read_parquet(interactions)["track_id"].unique().to_list()) + ["gone/a", "gone/b"]
    write_embeddings(ItemVectors(ids, np.eye(len(ids), 8, dtype=np.float32)), tmp_path / "mine.parquet", {})
    experiment = parse_experiment({
        "name": "given", "storage": str(tmp_path / "storage"),
        "catalog": {"kind": "folder", "folder": str(tmp_path / "catalog"), "interactions": str(interactions)},
        "backbones": {"mine": {"backbone": "precomputed", "path": str(tmp_path / "mine.parquet")}},
        "recommenders": {"knn": {}}, "baselines": [], "studies": ["hot"]})
    built = []
    original = PrecomputedEmbedder.__init__
    monkeypatch.setattr(PrecomputedEmbedder, "__init__", lambda self, **o: (built.append(1), original(self, **o))[1])
    result = run_assets(build_definitions(experiment), "embed", dg.DagsterInstance.ephemeral())
    meta = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey("embeddings_mine"))
    assert meta["vectors_not_in_catalog"].value == 2
    assert embedded_batches(result, "mine") == ["b000", "b001"]
    assert len(built) == 1  # plan, both batch steps and collect share one construction
