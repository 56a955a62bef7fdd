"""GPU routing from one set of definitions: GPU-heavy steps carry the `gpu` pool and a Kubernetes GPU request,
light steps carry neither; the executor follows MUSICREC_EXECUTOR."""
import json

import pytest

from assets.experiment import Experiment
from assets.placement import GPU_POOL, K8S_GPU_REQUEST
from pipelines.definitions import build_definitions
from pipelines.executors import executor_from_env

EXPERIMENT = Experiment(backbones=("random", "handcrafted", "musicnn_mtt"), content_recommenders=("knn", "bert4rec"),
                        cf_baselines=("ease",))
GPU_STEPS = {"embeddings_musicnn_mtt", "tags_musicnn_mtt", "model_bert4rec__random", "model_bert4rec__handcrafted",
             "model_bert4rec__musicnn_mtt", "cold_start_per_user", "text_retrieval_results", "olga_layer_sweep"}


def test_gpu_steps_carry_the_pool_and_the_kubernetes_request(tmp_path):
    defs = build_definitions(str(tmp_path), experiment=EXPERIMENT)
    graph = defs.resolve_asset_graph()
    on_gpu = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        op = node.assets_def.node_def
        name = key.to_user_string()
        if op.pool == GPU_POOL:
            on_gpu.add(name)
            assert json.loads(op.tags["dagster-k8s/config"]) == K8S_GPU_REQUEST["dagster-k8s/config"], name  # stored as JSON
        else:
            assert op.pool is None and "dagster-k8s/config" not in op.tags, name
    assert on_gpu == GPU_STEPS


@pytest.mark.parametrize(("name", "expected"), [("", "in_process"), ("in_process", "in_process"),
                                                ("multiprocess", "multiprocess")])
def test_executor_follows_the_environment(monkeypatch, tmp_path, name, expected):
    monkeypatch.setenv("MUSICREC_EXECUTOR", name)
    assert executor_from_env().name == expected
    defs = build_definitions(str(tmp_path), experiment=EXPERIMENT)
    assert defs.resolve_job_def("demo").executor_def.name == expected


def test_unknown_or_missing_executor_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MUSICREC_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="MUSICREC_EXECUTOR must be one of"):
        executor_from_env()
    monkeypatch.setenv("MUSICREC_EXECUTOR", "k8s")
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install -e '\.\[k8s\]'"):
            executor_from_env()
    else:
        assert executor_from_env().name == "k8s"
