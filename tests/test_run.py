"""`musicrec run` and `musicrec check` as a new user meets them: a folder of audio files, a listening table,
vectors they already have and one experiment file; every kind of mistake named by `check`; a recommender's
version bump reruns exactly its branch; a recommender registered from outside the package joins the graph and
the report; the Music4All-Onion protocol runs end to end on a fixture in the real formats."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO_ROOT, make_folder_catalog
from music4all_fixture import write_music4all_fixture

from assets.experiment import load_experiment
from catalog.io import ItemVectors, read_table, write_embeddings
from pipelines.cli import main
from pipelines.definitions import MAIN_JOB, build_definitions
from pipelines.run import run_experiment
from pipelines.staleness import outdated_assets
from recommenders.base import register_recommender
from recommenders.knn import ItemKNN
from recommenders.popularity import Popularity

pytestmark = pytest.mark.slow


def write_experiment(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture()
def user_folder(tmp_path: Path) -> dict:
    """What a new user brings: tone files in two batch folders, a plays Parquet and a Parquet of vectors
    (track_id + vector) from a model musicrec has no loader for."""
    interactions = make_folder_catalog(tmp_path / "music")
    track_ids = sorted(read_table(interactions, "interactions")["track_id"].unique().to_list())
    rng = np.random.default_rng(0)
    vectors = tmp_path / "my_model_vectors.parquet"
    write_embeddings(ItemVectors(track_ids, rng.standard_normal((len(track_ids), 8)).astype(np.float32)), vectors, {})
    experiment = {
        "name": "my_tones", "storage": "out",
        "catalog": {"kind": "folder", "folder": "music", "interactions": "interactions.parquet"},
        "backbones": {"random": {"dim": 16}, "handcrafted": {},
                      "my_model": {"backbone": "precomputed", "path": "my_model_vectors.parquet"}},
        "recommenders": {"knn": {}, "shallow": {"max_epochs": 2, "patience": 1}},
        "baselines": ["popularity"],
    }
    return {"folder": tmp_path, "experiment": experiment, "track_ids": track_ids}


def test_musicrec_run_on_a_users_folder_reports_all_three_tables(user_folder):
    path = write_experiment(user_folder["folder"] / "mine.yaml", user_folder["experiment"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICREC_", "DAGSTER_"))}
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(path)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = user_folder["folder"] / "out" / "reports" / "report.md"
    assert f"Report: {report}" in run.stdout
    text = report.read_text()
    for table in ("random", "handcrafted", "my_model"):
        assert f"| knn | {table} |" in text and f"| shallow | {table} |" in text
    assert "| popularity | none |" in text
    assert (user_folder["folder"] / "out" / "dagster" / "dagster.yaml").exists()  # its own Dagster instance
    stored = pl.read_parquet(user_folder["folder"] / "out" / "tables" / "metrics.parquet")
    assert set(stored["dataset"]) == {"my_tones"} and set(stored["backbone"]) == {"random", "handcrafted",
                                                                                   "my_model", "none"}
    # every step's wall time, slowest first, each run's steps within its wall time
    rows = [line.split(" | ") for line in (user_folder["folder"] / "out" / "reports" / "run_steps.md")
            .read_text().splitlines() if line.startswith("| embed |") or line.startswith("| experiment |")]
    seconds = {(job.strip("| "), step): float(value.strip(" |")) for job, step, value in rows}
    assert ("experiment", "model_shallow__handcrafted") in seconds and ("embed", "catalog_tables") in seconds
    for job in ("embed", "experiment"):
        steps = [value for (name, step), value in seconds.items() if name == job and step != "**whole run**"]
        assert 0 < max(steps) <= seconds[(job, "**whole run**")]
    assert "musicrec: " in run.stdout and " steps in " in run.stdout


def check(tmp_path: Path, data: dict, capsys) -> tuple[int, str]:
    code = main(["check", str(write_experiment(tmp_path / "check.yaml", data))])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_check_passes_a_valid_experiment_and_trains_nothing(user_folder, capsys):
    code, out = check(user_folder["folder"], user_folder["experiment"], capsys)
    assert code == 0 and "ok. Experiment my_tones: 3 backbone table(s)" in out
    assert not (user_folder["folder"] / "out").exists()


def test_check_names_an_unknown_backbone(user_folder, capsys):
    data = {**user_folder["experiment"], "backbones": {"mule": {"backbone": "mule"}}}
    code, out = check(user_folder["folder"], data, capsys)
    assert code == 1 and "backbones.mule.backbone: unknown backbone 'mule'; known: [" in out


def test_check_names_a_missing_weight_folder(user_folder, capsys):
    data = {**user_folder["experiment"], "backbones": {
        "random": {}, "mert_l6": {"backbone": "hf_audio", "weights": "models/MERT-v1-95M", "layer": 6}}}
    code, out = check(user_folder["folder"], data, capsys)
    expected = user_folder["folder"] / "models" / "MERT-v1-95M"
    assert code == 1 and f"backbones.mert_l6.weights: {expected} does not exist" in out


def test_check_names_a_misspelled_option(user_folder, capsys):
    data = {**user_folder["experiment"], "recommenders": {"shallow": {"max_epoch": 2}}}
    code, out = check(user_folder["folder"], data, capsys)
    expected = ("recommenders.shallow.max_epoch: unknown option of shallow; allowed: ['lr', 'batch_size', "
                "'max_epochs', 'patience', 'eval_k', 'seed', 'device', 'out_dim', 'margin', 'negatives', "
                "'negative_pool', 'pairs_per_user']")
    assert code == 1 and expected in out


def test_check_names_a_missing_interactions_file(user_folder, capsys):
    data = {**user_folder["experiment"],
            "catalog": {"kind": "folder", "folder": "music", "interactions": "plays_2024.parquet"}}
    code, out = check(user_folder["folder"], data, capsys)
    assert code == 1 and f"catalog.interactions: {user_folder['folder'] / 'plays_2024.parquet'} does not exist" in out


def test_check_lists_every_problem_at_once(user_folder, capsys):
    data = {**user_folder["experiment"],
            "catalog": {"kind": "folder", "folder": "music", "interactions": "plays_2024.parquet"},
            "backbones": {"random": {}, "mert": {"backbone": "hf_audio", "weights": "nowhere"},
                          "r2": {"backbone": "random", "dimension": 3}}}
    code, out = check(user_folder["folder"], data, capsys)
    # the file's own problems come first: weights and tables are checked once the file is valid
    assert code == 1 and "1 problem(s)" in out and "backbones.r2.dimension" in out
    del data["backbones"]["r2"]
    code, out = check(user_folder["folder"], data, capsys)
    assert code == 1 and "2 problem(s)" in out and "backbones.mert.weights" in out and "catalog.interactions" in out


def test_version_bump_reruns_exactly_its_model_evaluation_and_downstream(user_folder, monkeypatch):
    data = {**user_folder["experiment"], "storage": str(user_folder["folder"] / "out"),
            "backbones": {"random": {"dim": 16}}}
    path = write_experiment(user_folder["folder"] / "bump.yaml", data)
    instance = dg.DagsterInstance.ephemeral()
    run_experiment(load_experiment(path), instance, say=lambda _: None)
    assert run_experiment(load_experiment(path), instance, say=lambda _: None) == set()  # nothing stale

    monkeypatch.setattr(ItemKNN, "version", "2-test")
    experiment = load_experiment(path)
    # knn on random is also the served system (the only table), so its serving tables follow
    expected = {"model_knn__random", "eval_knn__random", "per_user_metrics_all", "metrics", "significance", "report",
                "serving_recommendations", "serving_release"}
    outdated = outdated_assets(build_definitions(experiment), instance, MAIN_JOB)
    assert {key.to_user_string() for key in outdated} == expected
    rerun = run_experiment(experiment, instance, say=lambda _: None)
    assert {key.to_user_string() for key in rerun} == expected
    assert run_experiment(experiment, instance, say=lambda _: None) == set()


@register_recommender
class MostPlayedRecently(Popularity):
    """A toy recommender from outside the package: popularity under another name and version."""

    name = "toy_recent"
    version = "7"

    @dataclass(frozen=True)
    class Options:
        boost: float = 1.0


def test_a_recommender_from_a_test_module_joins_the_graph_and_the_report(user_folder):
    data = {**user_folder["experiment"], "storage": str(user_folder["folder"] / "out"),
            "backbones": {"random": {"dim": 16}}, "recommenders": {"knn": {}},
            "baselines": {"toy": {"recommender": "toy_recent", "boost": 2}}}
    experiment = load_experiment(write_experiment(user_folder["folder"] / "toy.yaml", data))
    defs = build_definitions(experiment)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"model_toy__none", "eval_toy__none"} <= keys
    assert (defs.resolve_assets_def("model_toy__none").code_versions_by_key[dg.AssetKey("model_toy__none")]
            .startswith("7:"))
    run_experiment(experiment, dg.DagsterInstance.ephemeral(), say=lambda _: None)
    assert "| toy | none |" in (experiment.storage / "reports" / "report.md").read_text()
    config = yaml.safe_load((experiment.storage / "models" / "toy__none" / "config.json").read_text())
    assert config["recommender"] == "toy_recent" and config["version"] == "7" and config["options"] == {"boost": 2.0}


def test_music4all_onion_protocol_end_to_end_on_real_formats(tmp_path):
    files = write_music4all_fixture(tmp_path / "m4a")
    data = yaml.safe_load((REPO_ROOT / "experiments" / "music4all_onion.yaml").read_text())
    data.update(storage=str(tmp_path / "out"),
                catalog={"kind": "music4all_onion", "listening": str(files["listening"]),
                         "information": str(files["information"])},
                backbones={"random": {"dim": 16}, "blf": {"backbone": "precomputed", "path": str(files["features"])}},
                recommenders={"knn": {}, "shallow": {"max_epochs": 3}},
                baselines=["popularity"])
    path = write_experiment(tmp_path / "m4a.yaml", data)
    assert main(["check", str(path)]) == 0
    experiment = load_experiment(path)
    run_experiment(experiment, dg.DagsterInstance.ephemeral(), say=lambda _: None)
    report = (experiment.storage / "reports" / "report.md").read_text()
    assert "| knn | blf |" in report and "| shallow | random |" in report
    train = pl.read_parquet(experiment.storage / "tables" / "hot_train.parquet")
    test = pl.read_parquet(experiment.storage / "tables" / "hot_test.parquet")
    assert train["timestamp"].min().isoformat() >= "2018-02-01" and train["timestamp"].max().isoformat() < "2019-02-01"
    assert test["timestamp"].min().isoformat() >= "2019-02-01" and test["timestamp"].max().isoformat() < "2019-03-01"
    cold = pl.read_parquet(experiment.storage / "tables" / "cold_start_table.parquet")
    assert {"semi_cold", "cold"} <= set(cold["scenario"]) and set(cold["backbone"]) == {"blf"}
    assert {"acarec", "knn", "shallow"} == set(cold["recommender"])
    # the planted signal: content ranks the new tracks of a user's artists above random
    hot = pl.read_parquet(experiment.storage / "tables" / "metrics.parquet").filter(
        (pl.col("recommender") == "knn") & (pl.col("metric") == "ndcg") & (pl.col("k") == 50))
    by_table = dict(zip(hot["backbone"], hot["value"]))
    assert by_table["blf"] > by_table["random"]
