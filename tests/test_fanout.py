"""Embedding fans out: each catalog batch of a backbone is a step of its own, so the multiprocess executor
embeds two batches in two worker processes (and `k8s_job_executor` in two pods); a rerun finds nothing to embed."""
from __future__ import annotations

import os

import dagster as dg
import pytest
import yaml
from conftest import make_folder_catalog

from assets.embeddings import mapping_key
from assets.experiment import load_experiment
from embedders.runner import embedding_files, read_backbone
from pipelines.definitions import build_definitions
from pipelines.run import execute, instance_for

pytestmark = pytest.mark.slow


def embed_steps(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """step key -> pid of the process that ran it, for the per-batch embedding steps of a run."""
    return {r.dagster_event.step_key: r.dagster_event.pid for r in instance.all_logs(run_id)
            if r.dagster_event is not None and r.dagster_event.event_type == dg.DagsterEventType.STEP_START
            and ".embed_" in r.dagster_event.step_key}


def test_two_batches_embed_in_two_worker_processes_and_a_rerun_embeds_nothing(tmp_path):
    make_folder_catalog(tmp_path / "music")
    path = tmp_path / "fanout.yaml"
    path.write_text(yaml.safe_dump({"name": "fanout", "storage": str(tmp_path / "out"), "executor": "multiprocess",
                                    "catalog": {"kind": "folder", "folder": str(tmp_path / "music")},
                                    "backbones": {"handcrafted": {}}}))
    experiment = load_experiment(path)
    instance = instance_for(experiment)
    try:
        result = execute(build_definitions(experiment), experiment, path, "embed", instance, {})
        assert result.success
        steps = embed_steps(instance, result.run_id)
        assert sorted(steps) == [f"embeddings_handcrafted.embed_handcrafted[{b}]" for b in ("b000", "b001")]
        assert len(set(steps.values()) | {os.getpid()}) == 3  # two workers, neither of them this process
        folder = tmp_path / "out" / "embeddings" / "handcrafted"
        assert len(read_backbone(folder).ids) == 12
        written = {p.name: p.stat().st_mtime_ns for p in embedding_files(folder)}

        in_process = experiment.model_copy(update={"executor": "in_process"})
        again = execute(build_definitions(in_process), in_process, path, "embed", instance, {})
        assert again.success and embed_steps(instance, again.run_id) == {}  # nothing to embed
        assert {p.name: p.stat().st_mtime_ns for p in embedding_files(folder)} == written
    finally:
        os.environ.pop("DAGSTER_HOME")


def test_mapping_keys_are_valid_and_distinct_for_any_batch_name():
    names = ["b000", "2024-06 live", "2024_06_live", "Ünïcode/set"]
    keys = [mapping_key(n) for n in names]
    assert keys[0] == "b000" and len(set(keys)) == len(keys)
    assert all(k.replace("_", "").isalnum() and k.isascii() for k in keys)
