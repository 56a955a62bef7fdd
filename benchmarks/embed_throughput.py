"""Embedding throughput per backbone: audio-seconds embedded per wall-second, end to end (decode, resample,
features, model), and the peak resident memory of the process, on a fixed set of clips.

Each backbone runs in its own subprocess so that its peak memory is its own. Backbones that need weights
(clap, hf_audio: their required `weights` option) are timed only when their weights are given
(`--clap-weights`, `--hf-audio-weights`); otherwise they are listed as skipped.

Usage: .venv/bin/python benchmarks/embed_throughput.py [--catalog storage/catalog/demo] [--tracks 64]
       [--threads 2] [--backbones random handcrafted musicnn_mtt musicnn_msd clap hf_audio]
       [--clap-weights PATH [--clap-config FOLDER_OR_NAME]] [--hf-audio-weights FOLDER [--hf-audio-trust-remote-code]]
The clips are the first N tracks of a catalog's `tracks.parquet` (default: the demo catalog, built by `make demo`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_ARGUMENT = {"clap": "--clap-weights", "hf_audio": "--hf-audio-weights"}  # backbones that need weights


def backbone_options(backbone: str, args: argparse.Namespace) -> dict | None:
    """The options a backbone is built with; None when it needs weights that were not given."""
    if backbone == "clap":
        if not args.clap_weights:
            return None
        return {"weights": str(args.clap_weights), **({"config": args.clap_config} if args.clap_config else {})}
    if backbone == "hf_audio":
        if not args.hf_audio_weights:
            return None
        return {"weights": str(args.hf_audio_weights), "trust_remote_code": args.hf_audio_trust_remote_code}
    return {}


def measure(backbone: str, options: dict, catalog: Path, n_tracks: int, threads: int) -> dict:
    """Runs in the child process: embed the clips once to warm up (JIT, weights), then time a second pass."""
    import resource
    import time

    import polars as pl
    import torch

    from embedders.base import create_embedder
    from embedders.runner import embed_tracks

    torch.set_num_threads(threads)
    tracks = pl.read_parquet(catalog / "tracks.parquet").sort("track_id").head(n_tracks)
    embedder = create_embedder(backbone, **options)
    embed_tracks(embedder, tracks.head(4), catalog, progress=lambda _: None)
    started = time.perf_counter()
    result = embed_tracks(embedder, tracks, catalog, progress=lambda _: None)
    wall = time.perf_counter() - started
    audio = float(tracks["duration_s"].sum())
    return {"backbone": backbone, "tracks": tracks.height, "audio_s": audio, "wall_s": wall,
            "x_realtime": audio / wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "failures": result.failures.height, "device": "cuda" if torch.cuda.is_available() else "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=REPO / "storage" / "catalog" / "demo")
    parser.add_argument("--tracks", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backbones", nargs="+", default=["random", "handcrafted", "musicnn_mtt", "musicnn_msd",
                                                           "clap", "hf_audio"])
    parser.add_argument("--clap-weights", type=Path, help="clap: a transformers CLAP folder or a LAION checkpoint .pt")
    parser.add_argument("--clap-config", help="clap with a LAION checkpoint: its config folder or a named config")
    parser.add_argument("--hf-audio-weights", type=Path, help="hf_audio: a local transformers model folder")
    parser.add_argument("--hf-audio-trust-remote-code", action="store_true",
                        help="hf_audio: run the folder's modelling code (MERT)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, json.loads(args.child_options), args.catalog, args.tracks,
                                 args.threads)))
        return
    if not (args.catalog / "tracks.parquet").exists():
        sys.exit(f"{args.catalog}/tracks.parquet not found: run `make demo` first or pass --catalog")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}; "
          f"clips: first {args.tracks} tracks of {args.catalog}")
    print(f"{'backbone':<14}{'tracks':>7}{'audio s':>9}{'wall s':>8}{'x real time':>13}{'peak RSS MB':>13}"
          f"{'device':>8}")
    for backbone in args.backbones:
        options = backbone_options(backbone, args)
        if options is None:
            print(f"{backbone:<14}  skipped: pass {WEIGHTS_ARGUMENT[backbone]} (local weights) to time it")
            continue
        child = subprocess.run([sys.executable, __file__, "--child", backbone, "--child-options", json.dumps(options),
                                "--catalog", str(args.catalog), "--tracks", str(args.tracks),
                                "--threads", str(args.threads)],
                               capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if child.returncode != 0:
            reason = child.stderr.strip().splitlines()[-1] if child.stderr else child.returncode
            print(f"{backbone:<14}  failed: {reason}")
            continue
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{r['backbone']:<14}{r['tracks']:>7}{r['audio_s']:>9.0f}{r['wall_s']:>8.1f}{r['x_realtime']:>13.1f}"
              f"{r['peak_rss_mb']:>13.0f}{r['device']:>8}")


if __name__ == "__main__":
    main()
