"""The experiment file decides which assets and jobs exist: its validation names the key path of every
problem, the shipped files parse, a hot-only experiment gets the hot matrix alone, and building the
definitions loads no model."""
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import demo_experiment

from assets.experiment import REPO_ROOT, STUDIES, ExperimentError, load_experiment, parse_experiment
from catalog.registry import option_names
from pipelines.definitions import MAIN_JOB, build_definitions

SMALL = dict(backbones={"random": {}}, recommenders={"knn": {}}, baselines=[])
EXPERIMENTS = REPO_ROOT / "experiments"


def asset_names(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}


def problems_of(data: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ExperimentError) as caught:
        parse_experiment({"storage": str(tmp_path), "catalog": {"kind": "demo"}, **data}, "test.yaml", tmp_path)
    assert str(caught.value).startswith("test.yaml: ")
    return caught.value.problems


@pytest.mark.parametrize("name", ["demo", "folder", "music4all_onion", "journal_scale"])
def test_shipped_experiment_files_are_valid(name):
    experiment = load_experiment(EXPERIMENTS / f"{name}.yaml")
    assert experiment.catalog.kind == {"demo": "demo", "folder": "folder", "music4all_onion": "music4all_onion",
                                       "journal_scale": "synthetic"}[name]
    assert experiment.twin() == "random"
    assert experiment.storage == REPO_ROOT / "storage" / ("" if name == "demo" else experiment.name)


def test_demo_file_is_what_the_demo_ran():
    demo = load_experiment(EXPERIMENTS / "demo.yaml")
    assert demo.storage == REPO_ROOT / "storage"
    assert list(demo.backbones) == ["random", "handcrafted", "musicnn_mtt"]
    assert demo.cold_systems() == ["knn", "shallow", "contrastive", "hybrid", "acarec"]  # bert4rec ranks no new track
    assert demo.recommender_options("shallow") == {"max_epochs": 12, "patience": 3}
    assert ("popularity", "none") in demo.hot_systems() and len(demo.hot_systems()) == 5 * 3 + 3
    assert demo.served_system() == ("hybrid", "musicnn_mtt") and demo.similar_table() == "musicnn_mtt"


def test_music4all_file_is_the_journal_protocol():
    split = load_experiment(EXPERIMENTS / "music4all_onion.yaml").split
    assert (str(split.test_start), split.train_days, split.test_days, split.validation_share) == (
        "2019-02-01", 365, 28, 0.3)


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "exp").mkdir()
    path = tmp_path / "exp" / "mine.yaml"
    path.write_text(yaml.safe_dump({
        "catalog": {"kind": "folder", "folder": "music", "interactions": "../plays.parquet"},
        "backbones": {"vectors": {"backbone": "precomputed", "path": "vectors.npy", "ids": "ids.txt"}},
        "recommenders": {"knn": {}}}))
    experiment = load_experiment(path)
    assert experiment.name == "mine" and experiment.storage == tmp_path / "exp" / "storage" / "mine"
    assert experiment.catalog.folder == tmp_path / "exp" / "music"
    assert experiment.catalog.interactions == tmp_path / "plays.parquet"
    assert experiment.backbone_options("vectors") == {"path": str(tmp_path / "exp" / "vectors.npy"),
                                                      "ids": str(tmp_path / "exp" / "ids.txt")}


def test_every_problem_is_named_with_its_key_path(tmp_path):
    problems = problems_of({
        "backbones": {"mert": {"backbone": "mert_v1"}, "r": {"backbone": "random", "dimm": 3},
                      "h": {"backbone": "random", "dim": "many"}},
        "recommenders": {"knn": {}, "pop": {"recommender": "popularity"}},
        "baselines": ["shallow"],
        "studies": ["cold_start"],
    }, tmp_path)
    assert problems == ["studies: Value error, studies must include 'hot' (the backbone x recommender matrix); "
                        "got ['cold_start']"]  # structural errors come first, alone
    problems = problems_of({
        "backbones": {"mert": {"backbone": "mert_v1"}, "r": {"backbone": "random", "dimm": 3},
                      "h": {"backbone": "random", "dim": "many"}},
        "recommenders": {"knn": {}, "pop": {"recommender": "popularity"}},
        "baselines": ["shallow"],
    }, tmp_path)
    text = "\n".join(problems)
    assert "backbones.mert.backbone: unknown backbone 'mert_v1'; known: [" in text and "'hf_audio'" in text
    assert "backbones.r.dimm: unknown option of random; allowed: ['dim', 'seed']" in text
    assert "backbones.h.dim: Input should be a valid integer" in text
    assert "recommenders.pop: popularity uses no backbone; list it under baselines" in text
    assert "baselines.shallow: shallow needs a backbone; list it under recommenders" in text
    assert len(problems) == 5


def test_unknown_keys_and_catalog_kinds_are_refused(tmp_path):
    problems = problems_of({"backbone": {"random": {}}, "catalog": {"kind": "spotify"}}, tmp_path)
    assert any(p.startswith("backbone: Extra inputs are not permitted") for p in problems)
    assert any(p.startswith("catalog: Input tag 'spotify' found using 'kind' does not match any of the expected tags")
               for p in problems)


def test_options_are_converted_to_their_declared_types(tmp_path):
    experiment = parse_experiment({"storage": str(tmp_path), "catalog": {"kind": "demo"},
                                   "backbones": {"random": {"dim": "16"}},
                                   "recommenders": {"shallow": {"lr": "1e-3"}}})  # YAML reads 1e-3 as a string
    assert experiment.backbone_options("random") == {"dim": 16}
    assert experiment.recommender_options("shallow") == {"lr": 0.001}


def test_cold_start_reference_takes_its_options_from_the_study(tmp_path):
    base = {"storage": str(tmp_path), "catalog": {"kind": "demo"}, "backbones": {"random": {}},
            "recommenders": {"knn": {}}, "studies": ["hot", "cold_start"]}
    experiment = parse_experiment({**base, "cold_start": {"options": {"max_epochs": "2"}}})
    assert experiment.cold_start.reference == "acarec"
    assert experiment.recommender_options("acarec") == {"max_epochs": 2}
    assert problems_of({**base, "cold_start": {"options": {"max_epoch": 2}}}, tmp_path) == [
        "cold_start.options.max_epoch: unknown option of acarec; allowed: "
        f"{list(option_names(experiment.recommender_class('acarec')))}"]
    listed = {**base, "recommenders": {"knn": {}, "acarec": {}}, "cold_start": {"options": {"max_epochs": 2}}}
    assert "cold_start.options: acarec is listed under recommenders or baselines; give its options there" in \
        problems_of(listed, tmp_path)


def test_hot_only_experiment_has_no_study_assets_or_jobs(tmp_path):
    defs = build_definitions(demo_experiment(tmp_path, **SMALL, studies=["hot"]))
    names = asset_names(defs)
    assert {"embeddings_random", "model_knn__random", "eval_knn__random", "report"} <= names
    assert not names & {"cold_start_per_user", "cold_start_table", "artist_similarity_demo", "olga_layer_sweep",
                        "search_index", "text_retrieval_results"}
    report_inputs = {key.to_user_string() for key in defs.resolve_assets_def("report").dependency_keys}
    assert report_inputs == {"metrics", "significance", "tracks", "embeddings_random"}  # + the coverage section
    assert {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")} == {MAIN_JOB, "embed"}


def test_every_study_adds_its_assets_and_report_sections(tmp_path):
    defs = build_definitions(demo_experiment(tmp_path, **SMALL, studies=list(STUDIES)))
    assert {"cold_start_table", "artist_similarity_demo", "olga_layer_sweep", "search_index"} <= asset_names(defs)
    report_inputs = {key.to_user_string() for key in defs.resolve_assets_def("report").dependency_keys}
    assert report_inputs == {"metrics", "significance", "cold_start_table", "artist_similarity_demo", "tracks",
                             "embeddings_random"}
    main = set(defs.resolve_job_def(MAIN_JOB).asset_layer.executable_asset_keys)
    assert dg.AssetKey("olga_layer_sweep") not in main and dg.AssetKey("text_retrieval_results") not in main


def test_one_backbone_gives_several_tables(tmp_path):
    experiment = demo_experiment(tmp_path, backbones={"r16": {"backbone": "random", "dim": 16},
                                                      "r32": {"backbone": "random", "dim": 32, "seed": 1}},
                                 recommenders={"knn": {}}, baselines=[], studies=["hot"], metrics={"twin": "r16"})
    defs = build_definitions(experiment)
    assert {"embeddings_r16", "embeddings_r32", "model_knn__r16", "model_knn__r32"} <= asset_names(defs)
    versions = {key: defs.resolve_assets_def(key).code_versions_by_key[dg.AssetKey(key)]
                for key in ("embeddings_r16", "embeddings_r32")}
    assert versions["embeddings_r16"] != versions["embeddings_r32"]  # the options are part of the code version


def test_definitions_load_no_weights_and_a_missing_weight_fails_only_its_step(tmp_path, tiny_catalog):
    """A CLAP table whose weights do not exist: the definitions build (nothing is loaded), the clap step fails
    naming the experiment key and the expected weights, the other backbone's step succeeds."""
    missing = tmp_path / "no_such_clap"
    experiment = demo_experiment(tmp_path / "storage", backbones={"random": {}, "clap_music": {
        "backbone": "clap", "weights": str(missing)}}, recommenders={"knn": {}}, baselines=[], studies=["hot"])
    defs = build_definitions(experiment)
    assert "embeddings_clap_music" in asset_names(defs)
    from conftest import copy_catalog
    copy_catalog(tiny_catalog, tmp_path / "storage" / "catalog" / "demo")
    result = defs.resolve_job_def("embed").execute_in_process(raise_on_error=False)
    failures = {event.step_key: event.step_failure_data.error.message for event in result.all_events
                if event.is_step_failure}
    step = "embeddings_clap_music.plan_clap_music"  # the first step of the table's graph
    assert list(failures) == [step]
    assert f"backbones.clap_music: clap: {missing} (the `weights` option) does not exist" in failures[step]
    assert "transformers CLAP folder" in failures[step]
    assert dg.AssetKey("embeddings_random") in {e.asset_key for e in result.get_asset_materialization_events()}
