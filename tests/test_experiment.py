"""The experiment matrix decides which assets and jobs exist: a catalog with only audio and listening gets
the hot matrix alone, and the report reads only the studies that run."""
import dagster as dg
import pytest

from assets.experiment import DEMO, STUDIES, Experiment, experiment_from_env
from pipelines.definitions import build_definitions

SMALL = dict(backbones=("random",), content_recommenders=("knn",), cf_baselines=())


def asset_names(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}


def test_hot_only_experiment_has_no_study_assets_or_jobs(tmp_path):
    defs = build_definitions(str(tmp_path), experiment=Experiment(**SMALL, studies=("hot",)))
    names = asset_names(defs)
    assert {"embeddings_random", "model_knn__random", "eval_knn__random", "report"} <= names
    assert not names & {"cold_start_per_user", "cold_start_table", "artist_similarity_demo", "olga_layer_sweep",
                        "search_index", "text_retrieval_results"}
    report_inputs = {key.to_user_string() for key in defs.resolve_assets_def("report").dependency_keys}
    assert report_inputs == {"metrics", "significance"}
    assert {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")} == {"demo", "embed"}


def test_every_study_adds_its_assets_and_report_sections(tmp_path):
    defs = build_definitions(str(tmp_path), experiment=Experiment(**SMALL))
    assert {"cold_start_table", "artist_similarity_demo", "olga_layer_sweep", "search_index"} <= asset_names(defs)
    report_inputs = {key.to_user_string() for key in defs.resolve_assets_def("report").dependency_keys}
    assert report_inputs == {"metrics", "significance", "cold_start_table", "artist_similarity_demo"}
    demo = set(defs.resolve_job_def("demo").asset_layer.executable_asset_keys)
    assert dg.AssetKey("olga_layer_sweep") not in demo and dg.AssetKey("text_retrieval_results") not in demo


@pytest.mark.parametrize("studies", [("cold_start",), ("hot", "sessions")])
def test_studies_must_include_hot_and_be_known(studies):
    with pytest.raises(ValueError, match="studies"):
        Experiment(studies=studies)
    assert "hot" in STUDIES


def test_studies_from_the_environment(monkeypatch):
    monkeypatch.delenv("MUSICREC_STUDIES", raising=False)
    assert experiment_from_env() == DEMO
    monkeypatch.setenv("MUSICREC_STUDIES", " hot, cold_start ")
    assert experiment_from_env().studies == ("hot", "cold_start")
    assert experiment_from_env().backbones == DEMO.backbones
    monkeypatch.setenv("MUSICREC_STUDIES", "cold_start")
    with pytest.raises(ValueError, match="must include 'hot'"):
        experiment_from_env()
