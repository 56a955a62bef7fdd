"""Embedding fan-out: the `embed` job of one folder catalog with the in-process executor (one process, batch
after batch) and with the multiprocess executor (each catalog batch a step in a process of its own), side by
side on the same files, each into a fresh storage folder.

The catalog: `--batches` batch folders of `--files` generated 22.05 kHz mono WAVs of `--seconds` s each (tones
with noise), embedded by the `handcrafted` backbone. Printed: wall time of each job, and of its batch steps alone
(first start to last end: the job time less the catalog, plan, check and collect steps and, for multiprocess,
their process start-ups), with the speed-ups; for the multiprocess run each batch step's process id and start
and end times from the Dagster event log (overlapping intervals: the batches ran in parallel).

Usage: .venv/bin/python benchmarks/fanout.py [--batches 2] [--files 24] [--seconds 20] [--scratch /tmp/musicrec_fanout]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import dagster as dg
import numpy as np
import soundfile as sf
import yaml

from assets.experiment import load_experiment
from pipelines.definitions import build_definitions
from pipelines.run import execute, instance_for

RATE = 22050


def write_catalog(folder: Path, batches: int, files: int, seconds: float) -> None:
    """`batches` folders b000.. of `files` WAVs each: a tone (110-1760 Hz) plus a little noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    for b in range(batches):
        for i in range(files):
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(110, 1760) * t) + 0.02 * rng.standard_normal(len(t))
            path = folder / f"b{b:03d}" / f"clip{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), wave.astype(np.float32), RATE)


def run_embed(scratch: Path, catalog: Path, executor: str) -> tuple[float, list[dict]]:
    """Run the `embed` job with `executor` into scratch/<executor>; (wall seconds, one row per batch step:
    step, pid, start, end in seconds since the run began)."""
    path = scratch / f"{executor}.yaml"
    path.write_text(yaml.safe_dump({"name": f"fanout_{executor}", "storage": str(scratch / executor),
                                    "executor": executor, "catalog": {"kind": "folder", "folder": str(catalog)},
                                    "backbones": {"handcrafted": {}}}))
    experiment = load_experiment(path)
    instance = instance_for(experiment)
    started = time.perf_counter()
    result = execute(build_definitions(experiment), experiment, path, "embed", instance, {})
    wall = time.perf_counter() - started
    os.environ.pop("DAGSTER_HOME")
    if not result.success:
        raise RuntimeError(f"{executor}: the embed run failed; see {scratch / executor}")
    records = instance.all_logs(result.run_id)
    origin = min(r.timestamp for r in records)
    steps: dict[str, dict] = {}
    for record in records:
        event = record.dagster_event
        if event is None or not (event.step_key or "").startswith("embeddings_handcrafted.embed_"):
            continue
        row = steps.setdefault(event.step_key, {"step": event.step_key})
        if event.event_type == dg.DagsterEventType.STEP_START:
            row["start"], row["pid"] = record.timestamp - origin, event.pid
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            row["end"] = record.timestamp - origin
    return wall, sorted(steps.values(), key=lambda r: r["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--files", type=int, default=24, help="files per batch")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each file, s")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/musicrec_fanout"))
    args = parser.parse_args()
    shutil.rmtree(args.scratch, ignore_errors=True)
    catalog = args.scratch / "music"
    write_catalog(catalog, args.batches, args.files, args.seconds)
    audio_s = args.batches * args.files * args.seconds
    walls, spans = {}, {}
    for executor in ("in_process", "multiprocess"):
        walls[executor], steps = run_embed(args.scratch, catalog, executor)
        spans[executor] = max(r["end"] for r in steps) - min(r["start"] for r in steps)
        if executor == "multiprocess":
            detail = steps
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{args.batches} batches x {args.files} files x {args.seconds:g} s ({audio_s / 60:.1f} min of audio), "
          "backbone handcrafted, embed job (ingest + embedding)")
    print("| executor | job wall s | speed-up | batch steps, first start to last end, s | speed-up |")
    print("|---|---|---|---|---|")
    for executor, wall in walls.items():
        print(f"| {executor} | {wall:.1f} | {walls['in_process'] / wall:.2f}x | {spans[executor]:.1f} | "
              f"{spans['in_process'] / spans[executor]:.2f}x |")
    print("\nmultiprocess batch steps (seconds since the run began):")
    print("| step | pid | start | end |")
    print("|---|---|---|---|")
    for row in detail:
        print(f"| {row['step']} | {row['pid']} | {row.get('start', float('nan')):.1f} | "
              f"{row.get('end', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
