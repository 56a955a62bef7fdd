"""Wall time and peak memory of each hot-start stage as the catalog grows: catalog, embed, split, each fit,
ranking and metrics, on the synthetic scale catalog (`catalog.scale`) at several track counts.

Sizes: the `journal` preset (55k tracks, 8k artists, 200 taste clusters, 21k users, median 140 tracks per user)
scaled to `--tracks` tracks, artists, clusters and users in proportion (so plays grow in proportion too). The
split is the one of experiments/journal_scale.yaml; vectors come from the `synthetic` backbone (dim 200).

Each stage runs in its own subprocess, calling the functions the pipeline's assets call (`evaluation.splits.
hot_split`, `Recommender.fit` with the validation users, `recommend` for the test users as
`assets.hot_start` does, `evaluation.metrics.per_user_metrics`), so its peak RSS (getrusage) is that stage's
own: the interpreter, its imports and the stage's inputs included. Time is the stage's work only (reading its
inputs from the work folder excluded). Trained models run `--epochs` epochs (with their validation check).
The growth exponent of a stage is the slope of log(time) against log(tracks) (least squares over the sizes).

Usage: python benchmarks/scale.py [--tracks 5000 20000 55000] [--models knn,elsa,...] [--epochs 1]
Prints a Markdown table and writes it to storage/benchmarks/scale.md (`--out`).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("knn", "elsa", "popularity", "shallow", "contrastive", "hybrid")
KS = (10, 20, 50)  # experiments/journal_scale.yaml metrics.ks


def scaled_config(n_tracks: int, seed: int = 0):
    """The `journal` preset with tracks, artists, clusters and users scaled by n_tracks / 55,000."""
    from catalog.scale import preset

    base = preset("journal", seed=seed)
    factor = n_tracks / base.n_tracks
    return replace(base, n_tracks=n_tracks, n_artists=max(2, round(base.n_artists * factor)),
                   n_clusters=max(2, round(base.n_clusters * factor)), n_users=max(2, round(base.n_users * factor)))


def split_arguments() -> dict[str, Any]:
    """`hot_split` keyword arguments of experiments/journal_scale.yaml (JSON-able: the cutoff as ISO text)."""
    import yaml

    from assets.experiment import Split

    data = yaml.safe_load((ROOT / "experiments" / "journal_scale.yaml").read_text())
    arguments = Split(**data["split"]).arguments()
    return {**arguments, "cutoff": arguments["cutoff"] and arguments["cutoff"].isoformat()}


# ---------------------------------------------------------------------------------------------- the stages


def stage_catalog(work: Path, n_tracks: int) -> dict[str, Any]:
    from catalog.scale import generate

    started = time.perf_counter()
    tables = generate(scaled_config(n_tracks))
    seconds = time.perf_counter() - started
    for name in ("tracks", "interactions"):
        tables[name].write_parquet(work / f"{name}.parquet")
    return {"seconds": seconds, "plays": tables["interactions"].height,
            "users": tables["interactions"]["user_id"].n_unique()}


def stage_embed(work: Path) -> dict[str, Any]:
    import polars as pl

    from embedders.synthetic import SyntheticEmbedder

    ids = pl.read_parquet(work / "tracks.parquet")["track_id"].to_list()
    started = time.perf_counter()
    vectors, _ = SyntheticEmbedder(dim=200).embed_ids(ids)
    seconds = time.perf_counter() - started
    np.save(work / "vectors.npy", vectors)
    return {"seconds": seconds}


def stage_split(work: Path, arguments: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    import polars as pl

    from evaluation.splits import hot_split

    interactions = pl.read_parquet(work / "interactions.parquet")
    cutoff = arguments["cutoff"] and datetime.fromisoformat(arguments["cutoff"])
    started = time.perf_counter()
    split = hot_split(interactions, **{**arguments, "cutoff": cutoff})
    seconds = time.perf_counter() - started
    for part in ("train", "validation", "test"):
        getattr(split, part).write_parquet(work / f"{part}.parquet")
    return {"seconds": seconds, "train": split.train.height}


def _items(work: Path):
    import polars as pl

    from catalog.io import ItemVectors

    return ItemVectors(pl.read_parquet(work / "tracks.parquet")["track_id"].to_list(), np.load(work / "vectors.npy"))


def stage_fit(work: Path, model_name: str, epochs: int) -> dict[str, Any]:
    import polars as pl

    from catalog.histories import histories_from
    from catalog.registry import option_names
    from evaluation.splits import relevant_sets
    from recommenders.base import RECOMMENDERS

    cls = RECOMMENDERS[model_name]
    train, validation = (pl.read_parquet(work / f"{part}.parquet") for part in ("train", "validation"))
    items = _items(work) if cls.uses_content else None
    model = cls(**({"max_epochs": epochs} if "max_epochs" in option_names(cls) else {}))
    model.use_side_tables({"tracks": pl.read_parquet(work / "tracks.parquet")} if cls.side_tables else {})
    started = time.perf_counter()
    model.fit(train, items, validation=(histories_from(train), relevant_sets(validation)))
    seconds = time.perf_counter() - started
    model.save(work / "models" / model_name)
    report = getattr(model, "report", None)
    epoch_s = [round(e.seconds, 1) for e in report.epochs] if report is not None else []
    return {"seconds": seconds, "epoch_seconds": epoch_s}


def stage_rank(work: Path, model_name: str) -> dict[str, Any]:
    import polars as pl

    from catalog.histories import histories_from
    from evaluation.splits import relevant_sets
    from recommenders.base import RECOMMENDERS

    model = RECOMMENDERS[model_name].load(work / "models" / model_name)
    train, test = (pl.read_parquet(work / f"{part}.parquet") for part in ("train", "test"))
    started = time.perf_counter()
    histories = histories_from(train)
    relevant = relevant_sets(test)
    rankings = model.recommend({u: histories[u] for u in relevant}, k=max(KS))
    seconds = time.perf_counter() - started
    (work / f"rankings_{model_name}.json").write_text(json.dumps(rankings))
    return {"seconds": seconds, "users": len(rankings)}


def stage_metrics(work: Path, model_name: str) -> dict[str, Any]:
    import polars as pl

    from evaluation.metrics import per_user_metrics
    from evaluation.splits import relevant_sets

    rankings = json.loads((work / f"rankings_{model_name}.json").read_text())
    test = pl.read_parquet(work / "test.parquet")
    started = time.perf_counter()
    table = per_user_metrics(rankings, relevant_sets(test), KS)
    seconds = time.perf_counter() - started
    ndcg = table.filter((pl.col("metric") == "ndcg") & (pl.col("k") == max(KS)))["value"].mean()
    return {"seconds": seconds, "ndcg": float(ndcg or 0.0)}


def run_stage(argv: list[str]) -> None:
    """Child process: run one stage, print its result (with this process's peak RSS) as the last line."""
    stage, work, rest = argv[0], Path(argv[1]), argv[2:]
    if stage == "catalog":
        result = stage_catalog(work, int(rest[0]))
    elif stage == "embed":
        result = stage_embed(work)
    elif stage == "split":
        result = stage_split(work, json.loads(rest[0]))
    elif stage == "fit":
        result = stage_fit(work, rest[0], int(rest[1]))
    elif stage == "rank":
        result = stage_rank(work, rest[0])
    elif stage == "metrics":
        result = stage_metrics(work, rest[0])
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------- the parent


def measure(*args: str) -> dict[str, Any]:
    """Run one stage in a fresh interpreter; its result dict."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--stage", *args], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"stage {args}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Slope of log(seconds) against log(sizes); None with fewer than two sizes."""
    points = [(s, t) for s, t in zip(sizes, seconds) if t is not None and t > 0]
    if len(points) < 2:
        return None
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def markdown(results: dict[str, dict[int, dict[str, Any]]], sizes: list[int], header: str) -> str:
    """One row per stage: seconds and peak RSS (MiB) at each size, then the growth exponent."""
    columns = [f"{n // 1000}k tracks: s / MiB" for n in sizes]
    lines = [header, "", "| stage | " + " | ".join(columns) + " | exponent |",
             "|---|" + "---:|" * (len(sizes) + 1)]
    for stage, by_size in results.items():
        cells = [f"{by_size[n]['seconds']:.2f} / {by_size[n]['peak_rss_mib']:.0f}" if n in by_size else "–"
                 for n in sizes]
        exponent = growth_exponent([n for n in sizes if n in by_size], [by_size[n]["seconds"] for n in sizes
                                                                        if n in by_size])
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {'–' if exponent is None else f'{exponent:.2f}'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, nargs="+", default=[5_000, 20_000, 55_000])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated recommenders")
    parser.add_argument("--large-models", default=None,
                        help="only these models at sizes above --large-from (default: all of --models)")
    parser.add_argument("--large-from", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=ROOT / "storage" / "benchmarks" / "scale_work")
    parser.add_argument("--out", type=Path, default=ROOT / "storage" / "benchmarks" / "scale.md")
    args = parser.parse_args()
    arguments = json.dumps(split_arguments())
    results: dict[str, dict[int, dict[str, Any]]] = {}
    sizes = sorted(args.tracks)
    for n in sizes:
        work = args.work / str(n)
        work.mkdir(parents=True, exist_ok=True)
        models = args.models.split(",")
        if args.large_models is not None and n >= args.large_from:
            models = [m for m in models if m in args.large_models.split(",")]
        plan = [("catalog", ("catalog", str(work), str(n))), ("embed", ("embed", str(work))),
                ("split", ("split", str(work), arguments))]
        for model in models:
            plan += [(f"fit {model}", ("fit", str(work), model, str(args.epochs))),
                     (f"rank {model}", ("rank", str(work), model)), (f"metrics {model}", ("metrics", str(work), model))]
        for stage, stage_args in plan:
            result = measure(*stage_args)
            results.setdefault(stage, {})[n] = result
            extra = {k: v for k, v in result.items() if k not in ("seconds", "peak_rss_mib")}
            print(f"{n} tracks, {stage}: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mib']:.0f} MiB "
                  f"{extra if extra else ''}", flush=True)
        table = markdown(results, sizes, header(args.epochs))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)  # after every size: a cut-short run still leaves its table
    print(table)


def header(epochs: int) -> str:
    import os

    return (f"Hot-start stages on the scaled journal preset ({epochs} epoch(s) per trained model; "
            f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end). "
            "Cells: wall seconds / peak RSS MiB of the stage's own process; exponent: log-log slope of "
            "time against tracks.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--stage":
        run_stage(sys.argv[2:])
    else:
        main()
