"""Incremental ingestion: a new 5% batch of a folder catalog versus the first full ingest + embed.

Issue #17 item 5: ingestion decodes a file once (unchanged path, size and mtime: not read again; changed: its
sha256 is checked before decoding), so adding a batch of 5% to a folder of 10,000 short files costs at most
10% of the first full ingest + embed.

A scratch folder gets N short generated WAV files (default 10,000 x 0.5 s, 22,050 Hz mono PCM16: tones of
varied pitch, some with noise, some noise alone) in batch folders of 500 (b000, b001, ...), a small
interactions Parquet over their track ids (`<batch>/<stem>`, as ingestion derives them) and an experiment
YAML (folder catalog; backbone tables `random` and `handcrafted`; knn). On a Dagster instance under the
scratch storage (pipelines.run.instance_for) the `embed` job (catalog tables + every embedding table) runs
three times: (1) the first full run, (2) after a new batch folder of 5% of N files is added, (3) with
nothing changed. Reported per run: wall seconds, its share of run 1, the files ingestion decoded (from the
ingest cache before and after the run, by the same rule as `catalog.ingest.probe`), the seconds of each
Dagster step, and the process's peak RSS (MB, so far). Verdict: run 2 at most 10% of run 1.

Usage: .venv/bin/python benchmarks/ingest_incremental.py [--files 10000] [--seconds 0.5] [--batch-files 500]
       [--fraction 0.05] [--scratch /tmp/musicrec_ingest_incremental] [--keep]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import soundfile as sf
import yaml

from assets.experiment import load_experiment
from catalog.ingest import Probe, ingest_folder, read_cache
from catalog.io import write_table
from pipelines.definitions import build_definitions
from pipelines.run import instance_for
from pipelines.timings import step_seconds

SAMPLE_RATE = 22050  # Hz, of the generated files
GOAL = 0.10  # run 2 (new batch) over run 1 (full), at most


def write_clip(path: Path, index: int, seconds: float) -> None:
    """File `index`: 0.5 s (by default) of a tone whose pitch walks the chromatic scale from 55 Hz over 6
    octaves, every 3rd file with added noise and every 17th noise alone; amplitude 0.1-0.5 of full scale."""
    rng = np.random.default_rng(index)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    frequency = 55.0 * 2 ** ((index * 7 % 72) / 12)
    wave = np.sin(2 * np.pi * frequency * t) if index % 17 else np.zeros_like(t)
    if index % 3 == 0 or index % 17 == 0:
        wave = wave + 0.5 * rng.standard_normal(len(t))
    wave = (0.1 + 0.4 * rng.random()) * wave / max(np.abs(wave).max(), 1e-9)
    sf.write(str(path), wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")


def write_batch(folder: Path, batch: str, indices: range, seconds: float) -> list[str]:
    """Files `t<index>.wav` under folder/batch; returns their track ids (`<batch>/t<index>`)."""
    (folder / batch).mkdir(parents=True, exist_ok=True)
    for index in indices:
        write_clip(folder / batch / f"t{index:05d}.wav", index, seconds)
    return [f"{batch}/t{index:05d}" for index in indices]


def write_interactions(track_ids: list[str], path: Path, n_users: int = 300, plays: int = 20) -> Path:
    """`n_users` listeners with `plays` plays each of tracks drawn at random, over 2024 (interactions contract)."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u:04d}", track_ids[int(rng.integers(len(track_ids)))],
             datetime(2024, 1, 1) + timedelta(hours=int(rng.integers(0, 365 * 24))), 1)
            for u in range(n_users) for _ in range(plays)]
    table = pl.DataFrame(rows, schema=["user_id", "track_id", "timestamp", "count"], orient="row")
    table = table.unique(["user_id", "track_id"], maintain_order=True)
    return write_table(table.with_columns(pl.col("timestamp").cast(pl.Datetime("us"))), "interactions", path)


def decoded_since(before: dict[str, Probe], after: dict[str, Probe]) -> int:
    """Files the scan between two cache states decoded (catalog.ingest.probe's rule): new paths, and paths whose
    size or mtime changed and whose sha256 changed too."""
    count = 0
    for path, probe in after.items():
        known = before.get(path)
        if known is None or ((known.size, known.mtime_ns) != (probe.size, probe.mtime_ns)
                             and known.sha256 != probe.sha256):
            count += 1
    return count


PARTS = ("catalog_tables", "embeddings_random", "embeddings_handcrafted", "asset checks", "run overhead")
# the steps of an embedding asset: `embeddings_<table>`, or the ops of its graph, `embeddings_<table>.<op>`
EMBEDDING_STEP = re.compile(r"^embeddings_(random|handcrafted)(?:\..+)?$")


def parts(run: dict) -> list[float]:
    """A run's seconds split into PARTS (the checks: every other step)."""
    seconds = dict.fromkeys(PARTS, 0.0)
    for key, step in run["steps"].items():
        table = EMBEDDING_STEP.match(key)
        part = "catalog_tables" if key == "catalog_tables" else f"embeddings_{table[1]}" if table else "asset checks"
        seconds[part] += step
    seconds["run overhead"] = run["wall"] - sum(run["steps"].values())
    return list(seconds.values())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def run_embed(job: dg.JobDefinition, instance: dg.DagsterInstance, cache: Path) -> dict:
    """One `embed` run: wall seconds, files decoded, step seconds, peak RSS so far (MB)."""
    before = read_cache(cache)
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=True)
    wall = time.perf_counter() - started
    return {"wall": wall, "decoded": decoded_since(before, read_cache(cache)),
            "steps": step_seconds(instance, result.run_id), "rss": peak_rss_mb()}


def time_unchanged_ingest(folder: Path, cache: Path, scratch: Path) -> tuple[float, float]:
    """(seconds of read_cache, seconds of ingest_folder) on the unchanged folder with a copy of its warm cache:
    the catalog step's own ingestion share, apart from its reference check, table hashes and writes."""
    copy = Path(shutil.copy(cache, scratch / "profile_cache.parquet"))
    started = time.perf_counter()
    read_cache(copy)
    read = time.perf_counter() - started
    started = time.perf_counter()
    result = ingest_folder(folder, cache=copy)
    assert result.decoded == 0, f"an unchanged folder decoded {result.decoded} file(s)"
    return read, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000, help="files of the first full run")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each file, seconds")
    parser.add_argument("--batch-files", type=int, default=500, help="files per batch folder")
    parser.add_argument("--fraction", type=float, default=0.05, help="the new batch, as a share of --files")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/musicrec_ingest_incremental"))
    parser.add_argument("--keep", action="store_true", help="leave the scratch folder in place")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # Output(data_version=...) of the catalog asset
    shutil.rmtree(args.scratch, ignore_errors=True)
    folder = args.scratch / "catalog"

    started = time.perf_counter()
    track_ids: list[str] = []
    for number, first in enumerate(range(0, args.files, args.batch_files)):
        track_ids += write_batch(folder, f"b{number:03d}", range(first, min(first + args.batch_files, args.files)),
                                 args.seconds)
    write_interactions(track_ids, args.scratch / "interactions.parquet")
    path = args.scratch / "ingest_incremental.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ingest_incremental", "storage": "storage",
        "catalog": {"kind": "folder", "folder": "catalog", "interactions": "interactions.parquet"},
        "backbones": {"random": {}, "handcrafted": {}}, "recommenders": {"knn": {}}, "studies": ["hot"]},
        sort_keys=False))
    print(f"wrote {args.files} files ({args.seconds:g} s, {SAMPLE_RATE} Hz) in {-(-args.files // args.batch_files)} "
          f"batch folders under {folder} in {time.perf_counter() - started:.0f} s")

    experiment = load_experiment(path)
    os.environ.pop("DAGSTER_HOME", None)  # the scratch storage's own instance
    instance = instance_for(experiment)
    job = build_definitions(experiment).resolve_job_def("embed")
    cache = experiment.storage / "catalog" / "ingest_cache.parquet"

    full = run_embed(job, instance, cache)
    n_new = max(1, round(args.fraction * args.files))
    new_batch = f"b{-(-args.files // args.batch_files):03d}"
    write_batch(folder, new_batch, range(args.files, args.files + n_new), args.seconds)
    added = run_embed(job, instance, cache)
    same = run_embed(job, instance, cache)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load}; Python {platform.python_version()}, Dagster {dg.__version__}; "
          f"{args.seconds:g} s {SAMPLE_RATE} Hz mono PCM16 WAV files, backbones random + handcrafted\n")
    rows = [("1. first full ingest + embed", args.files, full),
            (f"2. + new batch {new_batch} ({args.fraction:.0%})", args.files + n_new, added),
            ("3. unchanged rerun", args.files + n_new, same)]
    print("| step | files | wall s | % of full | decoded files | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, files, run in rows:
        print(f"| {name} | {files:,} | {run['wall']:.1f} | {run['wall'] / full['wall']:.1%} | {run['decoded']:,} "
              f"| {run['rss']:,.0f} |")
    print("\nWhere the time goes, seconds: each Dagster step from its start to its success (asset checks summed), "
          "and the run's own overhead (wall time outside the steps)\n")
    print("| part | " + " | ".join(name.split(" (")[0] for name, _, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for part, seconds in zip(PARTS, zip(*(parts(run) for _, _, run in rows), strict=True), strict=True):
        print(f"| {part} | " + " | ".join(f"{s:.1f}" for s in seconds) + " |")
    read, scan = time_unchanged_ingest(folder, cache, args.scratch)
    print(f"\ncatalog_tables of the unchanged rerun ({same['steps'].get('catalog_tables', 0.0):.1f} s): ingest_folder "
          f"alone {scan:.1f} s (of which read_cache {read:.2f} s; the rest is per file: rglob + is_file, the "
          "Path.resolve of the link check, stat and the cache lookup); the remainder is the interactions reference "
          "check, the content hashes and the Parquet writes of the 5 tables")
    share = added["wall"] / full["wall"]
    print(f"\ngoal: a {args.fraction:.0%} batch costs at most {GOAL:.0%} of the first full run -> "
          f"{share:.1%}: {'met' if share <= GOAL else 'NOT met'}; the new batch decoded {added['decoded']} file(s) "
          f"of {n_new} new, the unchanged rerun {same['decoded']}")
    if not args.keep:
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
