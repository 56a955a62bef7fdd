"""Peak memory of embedding one long file per backbone: a generated 44.1 kHz stereo file (default 3 hours,
PCM16 WAV, about 1.9 GB), embedded by the runner with the default long-track policy (60 s chunks beyond
10 minutes), each backbone in its own process; peak RSS (ru_maxrss) and wall time per backbone, beside the
file's size decoded whole (what the process would need before chunking).

Usage: .venv/bin/python benchmarks/long_file.py [--hours 3] [--backbones random handcrafted musicnn_mtt musicnn_msd]
       [--folder /tmp/musicrec_long] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 44100
CHILD = """
import json, resource, sys, time, torch
import polars as pl
sys.path.insert(0, sys.argv[4])
from embedders.base import create_embedder
from embedders.runner import embed_tracks
torch.set_num_threads(int(sys.argv[3]))
embedder = create_embedder(sys.argv[1])
started = time.perf_counter()
result = embed_tracks(embedder, pl.DataFrame({"track_id": ["long"], "audio_path": ["long.wav"]}), sys.argv[2],
                      progress=lambda _: None)
print(json.dumps({"seconds": time.perf_counter() - started, "ok": result.vectors.ids == ["long"],
                  "errors": result.failures["error"].to_list(), "audio_s": result.audio_seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_long(path: Path, hours: float) -> None:
    """A stereo tone with a slow vibrato and a little noise, written 60 s at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 2, subtype="PCM_16") as handle:
        for start in range(0, int(hours * 3600), 60):
            t = np.arange(SAMPLE_RATE * 60) / SAMPLE_RATE + start
            wave = 0.3 * np.sin(2 * np.pi * (220 + 20 * np.sin(t / 30)) * t)
            handle.write((wave[:, None] + 0.01 * rng.standard_normal((len(t), 2))).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--backbones", nargs="+", default=["random", "handcrafted", "musicnn_mtt", "musicnn_msd"])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/musicrec_long"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / "long.wav"
    if not path.exists() or sf.info(str(path)).duration < args.hours * 3600 - 60:
        started = time.perf_counter()
        write_long(path, args.hours)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.0f} s")
    whole_mb = sf.info(str(path)).frames * 2 * 4 / 2**20
    print(f"{platform.machine()}, {args.threads} threads; {args.hours:g} h 44.1 kHz stereo; decoded whole as "
          f"float32 it would take {whole_mb:,.0f} MB")
    print(f"{'backbone':<14}{'ok':>4}{'audio h':>9}{'wall s':>9}{'x real time':>13}{'peak RSS MB':>13}"
          "  goal < 2,048 MB")
    for backbone in args.backbones:
        child = subprocess.run([sys.executable, "-c", CHILD, backbone, str(args.folder), str(args.threads), str(REPO)],
                               capture_output=True, text=True, cwd=REPO)
        if child.returncode != 0:
            print(f"{backbone:<14} failed: {child.stderr.strip().splitlines()[-1]}")
            continue
        row = json.loads(child.stdout.strip().splitlines()[-1])
        pace = row["audio_s"] / row["seconds"] if row["audio_s"] else float("nan")
        verdict = "met" if row["peak_mb"] < 2048 else "NOT met"
        print(f"{backbone:<14}{'yes' if row['ok'] else 'no':>4}{row['audio_s'] / 3600:>9.2f}{row['seconds']:>9.0f}"
              f"{pace:>13.1f}{row['peak_mb']:>13,.0f}  {verdict}{'  ' + str(row['errors']) if row['errors'] else ''}")


if __name__ == "__main__":
    main()
