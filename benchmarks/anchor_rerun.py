"""Re-running an unchanged experiment: wall seconds of `musicrec run` (`python -m pipelines.cli run`) the second
time, when nothing changed, against the first (cold) run of the same experiment as the anchor.

The experiment is experiments/demo.yaml with its catalog at `size: tiny` (12 tracks instead of 384) and its
storage in a temporary folder: the same backbones, recommenders, baselines and studies, so the same assets and
the same Dagster runs, only less data to compute. An unchanged rerun's cost is Dagster's (start-up, the embed
job, the staleness check), which does not grow with the catalog, so this stands for the full demo's rerun. The
note counts, from the Dagster instance of that storage, the assets the rerun materialised against all of the
experiment's assets (the rest were skipped as up to date).

    .venv/bin/python benchmarks/anchors.py --only rerun
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.anchors import device_label, wall_and_cpu

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
GOAL_S = 30.0


def tiny_experiment(folder: Path) -> Path:
    """experiments/demo.yaml with `catalog.size: tiny` and storage `folder/storage`; returns the new file."""
    spec = yaml.safe_load(DEMO.read_text())
    spec["name"] = "demo_tiny"
    spec["storage"] = "storage"
    spec["catalog"]["size"] = "tiny"
    path = folder / "demo_tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def musicrec_run(experiment: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + sys, all its processes) and output of `python -m pipelines.cli run
    experiment`; RuntimeError if it fails."""
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}  # use <storage>/dagster
    return wall_and_cpu([sys.executable, "-m", "pipelines.cli", "run", str(experiment)], env)


def materialised_since(dagster_home: Path, since: float) -> tuple[int, int]:
    """(runs, asset materialisations) recorded in that instance by runs created after `since` (epoch s)."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    instance = dg.DagsterInstance.get()
    runs = [r for r in instance.get_run_records() if r.create_timestamp.timestamp() >= since]
    events = sum(len(instance.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
                 for r in runs)
    return len(runs), events


def asset_count(experiment: Path) -> int:
    """How many assets the experiment defines (both jobs)."""
    from pipelines.check import check_experiment
    from pipelines.definitions import build_definitions

    loaded, problems = check_experiment(experiment)
    if problems:
        raise RuntimeError(f"{experiment}: {problems}")
    return len(build_definitions(loaded).resolve_all_asset_keys())


def measure(quick: bool) -> list[dict]:
    """One row: the unchanged rerun (ours) against the cold run (anchor), seconds. `quick` changes nothing:
    the tiny catalog is already the smallest."""
    demo_storage = REPO / "storage" / "demo"
    folder = Path(tempfile.mkdtemp(prefix="musicrec_rerun_"))
    try:
        experiment = tiny_experiment(folder)
        load_before = os.getloadavg()[0]
        cold_s, cold_cpu, _ = musicrec_run(experiment)
        rerun_start = time.time()
        rerun_s, rerun_cpu, output = musicrec_run(experiment)
        load_after = os.getloadavg()[0]
        runs, materialised = materialised_since(folder / "storage" / "dagster", rerun_start)
        total = asset_count(experiment)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    up_to_date = "every asset is up to date" in output
    demo_note = ("storage/demo is materialised but not used (the tiny copy is measured)" if demo_storage.exists()
                 else "storage/demo is not materialised, so the tiny copy is measured")
    return [{
        "name": "unchanged rerun of the demo experiment (tiny catalog), musicrec run",
        "ours": rerun_s,
        "anchor": cold_s,
        "unit": "s",
        "device": f"{device_label()}, load avg {load_before:.1f}-{load_after:.1f}",
        "quality": (f"rerun: {runs} Dagster run(s), {materialised} of {total} assets materialised, "
                    f"{total - materialised} skipped{' (main job: every asset up to date)' if up_to_date else ''}"),
        "note": (f"anchor = the first, cold run of the same experiment; goal rerun <= {GOAL_S:.0f} s "
                 f"({'met' if rerun_s <= GOAL_S else 'missed'}); CPU (user+sys) rerun {rerun_cpu:.0f} s / cold "
                 f"{cold_cpu:.0f} s; {demo_note}"),
    }]


if __name__ == "__main__":
    print(measure(quick=True))
