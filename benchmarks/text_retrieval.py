"""Natural-language music retrieval (DESIGN.md reference numbers D): TF-IDF vs the pretrained bi-encoder vs the
fine-tuned one, on caption and paraphrased queries, Recall/MRR/NDCG@10 with 95% CIs over seeds, printed beside
the published Recall@10 (arXiv 2411.05649).

    python benchmarks/text_retrieval.py                          # synthetic catalog (300 tracks)
    python benchmarks/text_retrieval.py storage/catalog/demo/tracks.parquet --seeds 0 1 2
    python benchmarks/text_retrieval.py lpmc_test.parquet --lpmusiccaps

Takes a few minutes on 2 CPU cores with the defaults (fine-tuning is capped at --max-steps per seed).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from catalog.lpmusiccaps import read_lpmusiccaps  # noqa: E402
from recommenders.text_biencoder import FineTuneSettings  # noqa: E402
from recommenders.text_retrieval import run_text_retrieval_experiment  # noqa: E402

# Recall@10 (%) from the paper: LP-MusicCaps-MC and MagnaTagATune; the pretrained model there is msmarco-BERT.
PUBLISHED = {"tfidf": (89.4, 57.7), "pretrained": (66.1, 32.1), "finetuned": (84.8, 62.8)}

INSTRUMENTS = ("piano", "strings", "choir", "organ", "brass", "woodwinds", "guitar", "mallets", "harpsichord",
               "synth")
TEMPO_MOOD = {"slow": "calm", "medium": "steady", "fast": "energetic"}
FORMS = ("chorale", "waltz", "march", "ballad", "fugue")


def synthetic_tracks(n_tracks: int = 300, seed: int = 0) -> pl.DataFrame:
    """A catalog of track_id, tags, caption in the spirit of the demo catalog: tags from instrumentation,
    tempo, register, mode and drums; captions phrase the same attributes in varied sentences."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_tracks):
        instrument, form = rng.choice(INSTRUMENTS), rng.choice(FORMS)
        tempo = str(rng.choice(list(TEMPO_MOOD)))
        register, mode = rng.choice(["low", "mid", "high"]), rng.choice(["bright", "melancholic"])
        drums = rng.choice(["none", "light", "driving"], p=[0.5, 0.25, 0.25])
        tags = [instrument, form, tempo, TEMPO_MOOD[tempo], f"{register} register", mode]
        if drums != "none":
            tags += ["drums", "beat" if drums == "driving" else "soft percussion"]
        opening = rng.choice([
            f"A {tempo}, {TEMPO_MOOD[tempo]} {instrument} {form} in a {register} register.",
            f"This {form} is played by {instrument} at a {tempo} tempo.",
            f"{instrument.capitalize()} carries a {TEMPO_MOOD[tempo]} {form}.",
        ])
        mood = rng.choice([f"The harmony sounds {mode}.", f"It feels {mode} from start to end."])
        rhythm = {"none": "There are no drums at all.", "light": "Soft percussion keeps a light pulse.",
                  "driving": "A driving drum beat pushes it forward."}[drums]
        rows.append((f"t{i:04d}", tags, f"{opening} {mood} {rhythm}"))
    return pl.DataFrame(rows, schema={"track_id": pl.String, "tags": pl.List(pl.String), "caption": pl.String},
                        orient="row")


def format_table(summary: pl.DataFrame) -> str:
    """One line per query set × system: mean [95% CI] in percent for each metric, and the published R@10."""
    metrics = [m for m in ("recall", "mrr", "ndcg") if m in summary["metric"].to_list()]
    k = int(summary["k"].max())
    header = f"{'query set':<12} {'system':<11}" + "".join(f"{m.upper() + '@' + str(k):>22}" for m in metrics)
    lines = [header + "   published R@10 (LP-MC / MTT)"]
    for (query_set, system), group in summary.filter(pl.col("k") == k).group_by(
        "query_set", "system", maintain_order=True
    ):
        cells = []
        for metric in metrics:
            row = group.filter(pl.col("metric") == metric).row(0, named=True)
            ci = "" if np.isnan(row["ci_low"]) else f" [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
            cells.append(f"{100 * row['mean']:.1f}{ci}".rjust(22))
        published = PUBLISHED[system] if query_set == "caption" else None
        reference = f"{published[0]:.1f} / {published[1]:.1f}" if published else "-"
        lines.append(f"{query_set:<12} {system:<11}" + "".join(cells) + f"   {reference}")
    n_seeds = int(summary["n_seeds"].max())
    lines.append(f"({n_seeds} seed(s); the published pretrained model is msmarco-BERT, ours all-MiniLM-L6-v2)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tracks", nargs="?", type=Path, help="tracks Parquet (track_id, tags, caption); "
                        "default: a synthetic catalog")
    parser.add_argument("--lpmusiccaps", action="store_true", help="read `tracks` with the LP-MusicCaps adapter")
    parser.add_argument("--n-tracks", type=int, default=300, help="size of the synthetic catalog")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=200, help="optimiser steps per seed, at most")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="folder for the tables and fine-tuned models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.tracks is None:
        tracks, source = synthetic_tracks(args.n_tracks), f"synthetic catalog ({args.n_tracks} tracks)"
    elif args.lpmusiccaps:
        tracks, source = read_lpmusiccaps(args.tracks), str(args.tracks)
    else:
        tracks, source = pl.read_parquet(args.tracks, columns=["track_id", "tags", "caption"]), str(args.tracks)
    settings = FineTuneSettings(epochs=args.epochs, batch_size=args.batch_size, max_steps=args.max_steps)
    started = time.perf_counter()
    summary = run_text_retrieval_experiment(tracks, seeds=args.seeds, out_folder=args.out, settings=settings)
    print(f"\nNatural-language retrieval on {source}, {time.perf_counter() - started:.0f} s")
    print(format_table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
