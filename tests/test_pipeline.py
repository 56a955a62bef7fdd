"""The whole Dagster asset graph on the tiny demo catalog, in process: the demo job succeeds, writes the report,
a metrics table that honours its contract and one embedding table per catalog batch; a second run of the
catalog and embedding stages embeds nothing."""
from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from conftest import copy_catalog, demo_experiment

from catalog.io import read_metadata, read_table
from embedders.runner import embedding_files, read_backbone
from pipelines.definitions import MAIN_JOB, build_definitions
from serving.snapshot import UnknownId, load_current

pytestmark = pytest.mark.slow
BATCHES = ["b000", "b001"]


def embedding_metadata(result: dg.ExecuteInProcessResult, backbone: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(f"embeddings_{backbone}")
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.fixture(scope="module")
def pipeline(tiny_catalog, tmp_path_factory):
    """(storage root, definitions, instance, result of the full experiment job): experiments/demo.yaml on the
    tiny demo catalog (conftest's TINY is its "tiny" size, so the copied catalog counts as up to date)."""
    root = tmp_path_factory.mktemp("storage")
    copy_catalog(tiny_catalog, root / "catalog" / "demo")  # the render itself is tested in test_demo_catalog
    defs = build_definitions(demo_experiment(root))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(MAIN_JOB).execute_in_process(instance=instance, raise_on_error=False)
    return root, defs, instance, result


def test_experiment_job_materialises_every_asset(pipeline):
    _, defs, _, result = pipeline
    failed = [event.step_key for event in result.all_events if event.is_step_failure]
    assert result.success, f"failed steps: {failed}"
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    in_demo_job = set(defs.resolve_job_def(MAIN_JOB).asset_layer.executable_asset_keys)
    assert materialized == in_demo_job
    assert {dg.AssetKey("report"), dg.AssetKey("cold_start_table"), dg.AssetKey("search_index")} <= in_demo_job
    checks = result.get_asset_check_evaluations()
    assert all(check.passed for check in checks), [c.check_name for c in checks if not c.passed]


def test_report_headlines_knn_on_both_baseline_backbones(pipeline):
    root, _, _, _ = pipeline
    report = (root / "reports" / "report.md").read_text()
    assert "HitRate@50" in report and "Recall@50" in report and "NDCG@50" in report
    for backbone in ("random", "handcrafted"):
        assert f"| knn | {backbone} |" in report
    assert "## What the tagging backbones hear" in report and "| musicnn_mtt |" in report
    assert "## Cold start (new tracks; k = 20)" in report and "## Cold start: discovery and exploit" in report
    page = (root / "reports" / "report.html").read_text()
    for title in ("Cold start (new tracks; k = 20)", "Cold start: discovery and exploit (k = 20)",
                  "What the tagging backbones hear"):
        assert f"<h2>{title}</h2>" in page  # the HTML report holds the same tables as the Markdown one
    for figure in ("artist_similarity_layers.png", "bars_semi_cold_recall_at20.png", "heatmap_hot_ndcg_at50.png"):
        assert f"]({figure})" in report and (root / "reports" / figure).stat().st_size > 5_000


def test_metrics_table_honours_its_contract(pipeline, tiny_catalog):
    root, _, _, _ = pipeline
    metrics = read_table(root / "tables" / "metrics.parquet", "metrics")  # validates against the contract
    assert set(metrics["scenario"]) == {"hot"} and set(metrics["dataset"]) == {"demo"}
    assert ((metrics["value"] >= 0) & (metrics["value"] <= 1)).all()
    assert (metrics["n"] > 0).all()
    bounded = metrics.filter(pl.col("ci_low").is_not_null())
    assert ((bounded["ci_low"] <= bounded["value"] + 1e-12) & (bounded["value"] <= bounded["ci_high"] + 1e-12)).all()
    # 12 tracks < k = 50: knn ranks every unplayed track, so every test user's held-out plays are in the list
    for backbone in ("random", "handcrafted"):
        rows = metrics.filter((pl.col("recommender") == "knn") & (pl.col("backbone") == backbone) & (pl.col("k") == 50))
        values = dict(zip(rows["metric"], rows["value"]))
        assert values["hit_rate"] == pytest.approx(1.0) and values["recall"] == pytest.approx(1.0)
        assert 0 < values["ndcg"] <= 1.0
    # every system is scored on the same test users (a user without a prediction scores 0, not absent)
    assert metrics.filter(pl.col("metric") == "hit_rate")["n"].n_unique() == 1


def test_one_embedding_table_per_catalog_batch(pipeline, tiny_catalog):
    root, _, _, result = pipeline
    track_ids = sorted(read_table(tiny_catalog / "tracks.parquet", "tracks")["track_id"])
    for backbone, dim in (("random", None), ("handcrafted", 92)):
        folder = root / "embeddings" / backbone
        assert [p.stem for p in embedding_files(folder)] == BATCHES
        assert [read_metadata(p)["catalog_batch"] for p in embedding_files(folder)] == BATCHES
        vectors = read_backbone(folder)
        assert sorted(vectors.ids) == track_ids
        if dim is not None:
            assert vectors.dim == dim
        meta = embedding_metadata(result, backbone)
        assert (meta["embedded_batches"], meta["skipped_batches"], meta["failed_tracks"]) == (BATCHES, [], 0)
    # MusiCNN's tag tables came from the embedding steps' forward: the tags asset had nothing left to run
    (tags,) = result.asset_materializations_for_node("tags_musicnn_mtt")
    assert (tags.metadata["embedded_batches"].value, tags.metadata["skipped_batches"].value) == ([], BATCHES)


def test_second_run_embeds_nothing(pipeline):
    root, defs, instance, _ = pipeline
    files = sorted((root / "embeddings").rglob("*.parquet"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    stages = dg.AssetSelection.groups("catalog", "embeddings").resolve(defs.resolve_asset_graph())
    again = defs.resolve_job_def(MAIN_JOB).execute_in_process(instance=instance, asset_selection=list(stages))
    assert again.success
    for backbone in ("random", "handcrafted"):
        meta = embedding_metadata(again, backbone)
        assert (meta["embedded_batches"], meta["skipped_batches"], meta["removed_batches"]) == ([], BATCHES, [])
    assert sorted((root / "embeddings").rglob("*.parquet")) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes


def test_release_serves_similar_artists_from_the_artist_study(pipeline, tiny_catalog):
    root, _, _, _ = pipeline
    release = load_current(root)
    artists = read_table(root / "catalog" / "demo" / "artists.parquet", "artists")
    first = artists["artist_id"][0]
    hits = release.similar_artists(first, 3)
    assert len(hits) == 3 and first not in {h.artist_id for h in hits}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.name for h in hits} <= set(artists["name"].to_list())
    with pytest.raises(UnknownId, match="unknown artist"):
        release.similar_artists(first + "x", 3)
