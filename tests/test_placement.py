"""GPU routing from one set of definitions: GPU-heavy steps (the classes that declare `needs_gpu`) carry the
`gpu` pool and a Kubernetes GPU request, light steps carry neither; the executor follows the experiment file's
`executor` key."""
import json

import pytest

from assets.experiment import ExperimentError, parse_experiment
from assets.placement import GPU_POOL, K8S_GPU_REQUEST
from embedders.base import BACKBONES
from pipelines.definitions import MAIN_JOB, build_definitions
from pipelines.executors import executor_named
from recommenders.base import RECOMMENDERS

ALL_STUDIES = ["hot", "cold_start", "artist_similarity", "text_search"]
GPU_STEPS = {"embeddings_musicnn_mtt", "tags_musicnn_mtt", "model_bert4rec__random", "model_bert4rec__handcrafted",
             "model_bert4rec__musicnn_mtt", "model_ease__none", "cold_start_per_user", "text_retrieval_results",
             "olga_layer_sweep"}


def experiment(tmp_path, **overrides):
    """The experiment of this file's first test (three backbones, knn and bert4rec, the ease baseline, every
    study) on the tiny demo catalog, with `overrides` of its top-level keys."""
    data = {"name": "placement", "storage": str(tmp_path / "storage"), "catalog": {"kind": "demo", "size": "tiny"},
            "backbones": {"random": {}, "handcrafted": {}, "musicnn_mtt": {}},
            "recommenders": {"knn": {}, "bert4rec": {}}, "baselines": {"ease": {}}, "studies": ALL_STUDIES,
            "gpu_pool": "always", **overrides}
    return parse_experiment(data, base=tmp_path)


def pools(defs) -> dict[str, bool]:
    """asset name -> whether its heavy step runs on the GPU; asserts that GPU steps carry the Kubernetes GPU
    request and the other steps neither the pool nor the request. An embedding asset is a graph whose per-batch
    `embed_*` steps are the only ones that may be on the GPU (its plan and collect steps are light)."""
    graph = defs.resolve_asset_graph()
    on_gpu = {}
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        on_gpu[name] = False
        for op in graph.get(key).assets_def.node_def.iterate_op_defs():
            if op.pool == GPU_POOL:
                on_gpu[name] = True
                # the tag is stored as JSON
                assert json.loads(op.tags["dagster-k8s/config"]) == K8S_GPU_REQUEST["dagster-k8s/config"], name
                assert not name.startswith("embeddings_") or op.name.startswith("embed_"), (name, op.name)
            else:
                assert op.pool is None and "dagster-k8s/config" not in op.tags, (name, op.name)
    return on_gpu


def test_gpu_steps_carry_the_pool_and_the_kubernetes_request(tmp_path):
    on_gpu = pools(build_definitions(experiment(tmp_path)))
    assert {name for name, gpu in on_gpu.items() if gpu} == GPU_STEPS


def test_placement_of_every_registered_backbone_and_recommender_follows_its_needs_gpu(tmp_path):
    backbones = {name: ({"weights": f"weights/{name}"} if "weights" in BACKBONES[name].weight_options else {})
                 for name in BACKBONES}
    content = [name for name in RECOMMENDERS if RECOMMENDERS[name].uses_content]
    baselines = [name for name in RECOMMENDERS if not RECOMMENDERS[name].uses_content]
    assert content and baselines
    on_gpu = pools(build_definitions(experiment(tmp_path, backbones=backbones, recommenders=content,
                                                baselines=baselines, studies=["hot"])))
    for name in BACKBONES:
        cls = BACKBONES[name]
        assert on_gpu[f"embeddings_{name}"] is cls.needs_gpu, name
        if cls.tag_names:
            assert on_gpu[f"tags_{name}"] is cls.needs_gpu, name
    for name in content:
        for table in BACKBONES:
            assert on_gpu[f"model_{name}__{table}"] is RECOMMENDERS[name].needs_gpu, (name, table)
    for name in baselines:
        assert on_gpu[f"model_{name}__none"] is RECOMMENDERS[name].needs_gpu, name
    # both kinds of placement occur among the registered classes, so the loops above test both branches
    for registry in (BACKBONES, RECOMMENDERS):
        assert {registry[name].needs_gpu for name in registry} == {True, False}
    # every other step (catalog, split, evaluations, reports) is light
    heavy = {name for name, gpu in on_gpu.items() if gpu}
    assert all(name.startswith(("embeddings_", "tags_", "model_")) for name in heavy), heavy


@pytest.mark.parametrize(("overrides", "expected"), [({}, "in_process"), ({"executor": "in_process"}, "in_process"),
                                                     ({"executor": "multiprocess"}, "multiprocess")])
def test_executor_follows_the_experiment_file(tmp_path, overrides, expected):
    chosen = experiment(tmp_path, **overrides)
    assert chosen.executor == expected
    assert executor_named(chosen.executor).name == expected
    defs = build_definitions(chosen)
    assert defs.resolve_job_def(MAIN_JOB).executor_def.name == expected
    assert defs.resolve_job_def("embed").executor_def.name == expected


def test_unknown_or_missing_executor_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="executor must be one of"):
        executor_named("slurm")
    with pytest.raises(ExperimentError, match="executor"):
        experiment(tmp_path, executor="slurm")
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install -e '\.\[k8s\]'"):
            executor_named("k8s")
    else:
        assert executor_named("k8s").name == "k8s"


def test_without_a_gpu_nothing_joins_the_pool(tmp_path):
    """"auto" (the default): on this CPU-only machine no step waits for a GPU slot; on Kubernetes the GPU
    steps request GPU pods; "never" keeps every step out of the pool anywhere."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto puts the GPU steps in the pool")
    assert not any(pools(build_definitions(experiment(tmp_path, gpu_pool="auto"))).values())
    assert not any(pools(build_definitions(experiment(tmp_path, gpu_pool="never"))).values())
    on_k8s = experiment(tmp_path, gpu_pool="auto", executor="k8s")
    assert on_k8s.uses_gpu_pool()
