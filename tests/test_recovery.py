"""Runs that recover: `kill -9` of a `musicrec run` while it holds the `gpu` pool's only slot must not block
the next run, which marks the dead run failed, frees its slot and finishes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest
import yaml
from conftest import REPO_ROOT, make_folder_catalog

from assets.experiment import load_experiment
from pipelines.recovery import PID_TAG, pool_report, process_alive, run_tags
from pipelines.run import run_experiment

pytestmark = pytest.mark.slow


def gpu_slot_holders(instance: dg.DagsterInstance) -> set[str]:
    storage = instance.event_log_storage
    if "gpu" not in storage.get_concurrency_keys():
        return set()
    return {slot.run_id for slot in storage.get_concurrency_info("gpu").claimed_slots}


def test_a_killed_run_does_not_block_the_next_one(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    interactions = make_folder_catalog(tmp_path / "music")
    data = {"name": "killed", "storage": str(tmp_path / "out"), "gpu_pool": "always",
            "catalog": {"kind": "folder", "folder": str(tmp_path / "music"), "interactions": str(interactions)},
            "backbones": {"random": {"dim": 8}},
            "recommenders": {"shallow": {"max_epochs": 100000, "patience": 100000}}, "baselines": []}
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}, "DAGSTER_HOME": str(home)}
    victim = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(path)], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        instance = dg.DagsterInstance.get()
        deadline = time.monotonic() + 240
        while not gpu_slot_holders(instance) and time.monotonic() < deadline and victim.poll() is None:
            time.sleep(0.5)
        holders = gpu_slot_holders(instance)
        assert len(holders) == 1, "the training step never claimed the gpu slot"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        (dead,) = holders
        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.STARTED  # what kill -9 leaves behind
        assert process_alive(instance.get_run_by_id(dead).tags) is False
        assert any(f"held by run(s) {dead}" in line for line in pool_report(instance))

        data["recommenders"]["shallow"] = {"max_epochs": 2, "patience": 1}
        path.write_text(yaml.safe_dump(data))
        said: list[str] = []
        worker = threading.Thread(target=run_experiment, args=(load_experiment(path), instance, said.append),
                                  daemon=True)
        worker.start()
        worker.join(timeout=300)
        assert not worker.is_alive(), "the next run is still waiting (for the dead run's gpu slot?)"
        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
        assert any(dead in line and "marked failed" in line for line in said)
        assert gpu_slot_holders(instance) == set()
        assert (tmp_path / "out" / "reports" / "report.md").exists()
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        if victim.poll() is None:
            victim.kill()


def test_process_alive_judges_only_this_hosts_tagged_runs():
    mine = run_tags()
    assert process_alive(mine) is True
    assert process_alive({}) is None
    assert process_alive({**mine, "musicrec/host": "another-machine"}) is None
    assert process_alive({**mine, PID_TAG: "999999999"}) is False
    assert process_alive({**mine, "musicrec/process_started": "12.0"}) is False  # the pid was reused


def test_a_waiting_step_names_its_holder_and_outlives_a_holder_that_dies(tmp_path):
    """A live run holds the gpu slot: the other run's step waiting for it says so in its run log, naming the
    holder; when the holder is killed mid-wait, the waiting run takes the slot and finishes."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    interactions = make_folder_catalog(tmp_path / "music")

    def experiment(name: str, epochs: int) -> dict:
        return {"name": name, "storage": str(tmp_path / name), "gpu_pool": "always",
                "catalog": {"kind": "folder", "folder": str(tmp_path / "music"), "interactions": str(interactions)},
                "backbones": {"random": {"dim": 8}},
                "recommenders": {"shallow": {"max_epochs": epochs, "patience": epochs}}, "baselines": []}

    (tmp_path / "holder.yaml").write_text(yaml.safe_dump(experiment("holder", 100000)))
    (tmp_path / "waiter.yaml").write_text(yaml.safe_dump(experiment("waiter", 2)))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}, "DAGSTER_HOME": str(home)}
    holder = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(tmp_path / "holder.yaml")],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        instance = dg.DagsterInstance.get()
        deadline = time.monotonic() + 240
        while not gpu_slot_holders(instance) and time.monotonic() < deadline:
            time.sleep(0.5)
        (holding,) = gpu_slot_holders(instance)
        said: list[str] = []
        waiter = threading.Thread(target=run_experiment, daemon=True,
                                  args=(load_experiment(tmp_path / "waiter.yaml"), instance, said.append))
        waiter.start()
        deadline = time.monotonic() + 240
        while not any("waits for a slot of pool gpu" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.5)
        waits = [line for line in said if "waits for a slot" in line]
        assert len(waits) == 1, waits  # said once, not on every poll
        assert f"held by run(s) {holding}" in waits[0] and "model_shallow__random" in waits[0]
        waiting_run = next(r.dagster_run.run_id for r in instance.get_run_records()
                           if r.dagster_run.tags.get("musicrec/pid") == str(os.getpid())
                           and r.dagster_run.status == dg.DagsterRunStatus.STARTED)
        logged = [e.message for e in instance.all_logs(waiting_run) if "waits for a slot" in (e.message or "")]
        assert logged and holding in logged[0]  # in the run log, where the web UI shows it

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        waiter.join(timeout=300)
        assert not waiter.is_alive(), "the waiting run never got the dead holder's slot"
        assert instance.get_run_by_id(holding).status == dg.DagsterRunStatus.FAILURE
        assert (tmp_path / "waiter" / "reports" / "report.md").exists()
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        if holder.poll() is None:
            holder.kill()
