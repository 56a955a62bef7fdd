"""Incremental cost: adding 5% new tracks to the demo catalog versus the full run.

The demo catalog (built by `make demo`) is served as a folder catalog in a scratch directory with 5% of its
tracks held back. The full run materialises everything; then the held-back tracks arrive as a new batch folder,
the `embed` job runs (what the new-batch sensor launches) and exactly the assets the automation conditions
mark stale are run. Target: the incremental wall time is at most 15% of the full run's.

Usage: .venv/bin/python benchmarks/incremental.py [--catalog storage/catalog/demo] [--fraction 0.05]
       [--scratch /tmp/musicrec_incremental] [--small]   (--small: knn + popularity only)
"""
from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from assets.experiment import parse_experiment
from catalog.io import write_table
from pipelines.automation_eval import run_assets, stale_assets
from pipelines.definitions import MAIN_JOB, build_definitions

REPO = Path(__file__).resolve().parent.parent


def stage_catalog(demo: Path, scratch: Path, fraction: float, seed: int = 0) -> tuple[Path, Path, list[dict]]:
    """Copy the demo audio into scratch/catalog (by batch) minus a held-back fraction; returns the catalog
    folder, the interactions Parquet (without plays of held-back tracks) and the held-back metadata rows."""
    tracks = pl.read_parquet(demo / "tracks.parquet")
    held = set(tracks.sample(fraction=fraction, seed=seed)["track_id"].to_list())
    folder = scratch / "catalog"
    rows, held_rows = [], []
    for track in tracks.iter_rows(named=True):
        row = {"audio_path": f"{track['batch']}/{track['track_id']}.flac", "track_id": track["track_id"],
               "artist_id": track["artist_id"], "title": track["title"], "batch": track["batch"],
               "tags": ";".join(track["tags"]), "caption": track["caption"] or ""}
        if track["track_id"] in held:
            held_rows.append({**row, "source": str(demo / track["audio_path"])})
            continue
        (folder / track["batch"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(demo / track["audio_path"], folder / row["audio_path"])
        rows.append(row)
    write_metadata(folder, rows)
    interactions = pl.read_parquet(demo / "interactions.parquet").filter(~pl.col("track_id").is_in(sorted(held)))
    return folder, write_table(interactions, "interactions", scratch / "interactions.parquet"), held_rows


def write_metadata(folder: Path, rows: list[dict]) -> None:
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle,
                                fieldnames=["audio_path", "track_id", "artist_id", "title", "batch", "tags", "caption"])
        writer.writeheader()
        writer.writerows([{k: r[k] for k in writer.fieldnames} for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=REPO / "storage" / "catalog" / "demo")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/musicrec_incremental"))
    parser.add_argument("--small", action="store_true", help="knn + popularity only (a quick check)")
    args = parser.parse_args()
    shutil.rmtree(args.scratch, ignore_errors=True)
    folder, interactions, held = stage_catalog(args.catalog, args.scratch, args.fraction)
    demo = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    small = {"recommenders": {"knn": {}}, "baselines": ["popularity"]} if args.small else {}
    experiment = parse_experiment({
        **demo, **small, "name": "incremental", "storage": str(args.scratch / "storage"),
        "catalog": {"kind": "folder", "folder": str(folder), "metadata_csv": str(folder / "metadata.csv"),
                    "interactions": str(interactions), "artists": str(args.catalog / "artists.parquet"),
                    "artist_edges": str(args.catalog / "artist_edges.parquet")}})
    defs = build_definitions(experiment)
    instance = dg.DagsterInstance.ephemeral()

    started = time.perf_counter()
    run_assets(defs, MAIN_JOB, instance)
    full = time.perf_counter() - started
    _, cursor = stale_assets(defs, instance)

    existing = list(csv.DictReader(open(folder / "metadata.csv")))
    for row in held:
        (folder / "new").mkdir(exist_ok=True)
        shutil.copy(row["source"], folder / "new" / f"{row['track_id']}.flac")
        row.update(audio_path=f"new/{row['track_id']}.flac", batch="new")
    write_metadata(folder, existing + held)
    started = time.perf_counter()
    run_assets(defs, "embed", instance)
    stale, _ = stale_assets(defs, instance, cursor)
    if stale:
        run_assets(defs, MAIN_JOB, instance, stale)
    incremental = time.perf_counter() - started

    print(f"{'run':<34}{'wall s':>9}{'share':>8}")
    print(f"{'full run (' + str(len(existing)) + ' tracks)':<34}{full:>9.1f}{1:>8.0%}")
    print(f"{'+' + str(len(held)) + ' new tracks (' + format(args.fraction, '.0%') + ')':<34}"
          f"{incremental:>9.1f}{incremental / full:>8.1%}")
    print(f"assets rerun after the embed job: {len(stale)} "
          f"({', '.join(sorted(stale)[:6])}{', ...' if len(stale) > 6 else ''})")
    print(f"target: at most 15% of the full run -> {'met' if incremental <= 0.15 * full else 'NOT met'}")


if __name__ == "__main__":
    main()
