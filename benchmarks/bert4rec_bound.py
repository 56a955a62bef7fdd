"""A BERT4Rec training epoch against its compute bound, measured in one process on the synthetic scale catalog.

The model is the one of experiments/journal_scale.yaml: max length 300, full softmax over every track, the item
table frozen from the 200-d `synthetic` vectors (hidden 200, 2 layers, 2 heads, FFN 256). The epoch is a real
`Bert4Rec.fit` epoch (no validation); its wall seconds come from the fit's report.

The bound is the epoch's matrix-multiply work at the best rate this machine reaches for the same shapes:
- FLOPs are counted from the epoch's own batches (`Bert4Rec.masked_batches`, same seed, so the same masks) and
  the sequences' true lengths (padding is overhead, not work): per token and layer 2·(3h² + h² + 2·h·f) for the
  projections and FFN, plus 4·len·h for attention; per masked position 2·h·N for the logits over N tracks.
  Backward: 2x forward for the encoder (gradients of activations and weights), 1x for the logits (the item table
  is frozen: only the states' gradient).
- Rates: `torch.mm` GFLOP/s at each part's shapes (logits forward (m, h)·(h, N), logits backward (m, N)·(N, h),
  encoder (b·len, h)·(h, f)), the best of 5 tries, measured before and after the epoch; the best rate is used,
  so the bound is the strictest this process saw.
Softmax, layer norms, Adam and data preparation are not in the bound: they are what the 2x allows.

Usage: python benchmarks/bert4rec_bound.py [--tracks 55000] [--batches N]   (N: only the first N batches,
timed with the same step as fit, for a quick look). The work folder is benchmarks/scale.py's
(storage/benchmarks/scale_work/<tracks>), made here when missing.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import split_arguments, stage_catalog, stage_embed, stage_split  # noqa: E402
from catalog.io import ItemVectors  # noqa: E402
from recommenders.bert4rec import Bert4Rec  # noqa: E402

OPTIONS = {"max_len": 300, "max_epochs": 1}  # experiments/journal_scale.yaml's bert4rec, one epoch


def work_folder(n_tracks: int) -> Path:
    """benchmarks/scale.py's folder for `n_tracks` with tracks, vectors and the split, made when missing."""
    work = ROOT / "storage" / "benchmarks" / "scale_work" / str(n_tracks)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "tracks.parquet").exists():
        stage_catalog(work, n_tracks)
    if not (work / "vectors.npy").exists():
        stage_embed(work)
    if not (work / "train.parquet").exists():
        stage_split(work, split_arguments())
    return work


def matmul_gflops(m: int, k: int, n: int, tries: int = 5) -> float:
    """Best GFLOP/s of `torch.mm` of float32 (m, k)·(k, n) over `tries` runs (after one warm-up)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * m * k * n / best / 1e9


def epoch_work(model: Bert4Rec, sequences: list[list[int]], limit: int | None) -> dict[str, float]:
    """FLOPs of one epoch's (or its first `limit` batches') useful work, split by part, and mean shapes."""
    net = model.net
    h, f, layers = net.position.weight.shape[1], model.options.ffn, model.options.layers
    n_items = len(model.item_ids)
    encoder = logits = 0.0
    masked_total = tokens_total = batches = 0
    for tokens, masked, _ in model.masked_batches(sequences, epoch=1):
        lengths = (tokens != net.pad).sum(1).astype(np.float64)
        encoder += layers * float((2 * lengths * (4 * h * h + 2 * h * f) + 4 * lengths ** 2 * h).sum())
        m = int(masked.sum())
        logits += 2.0 * m * h * n_items
        masked_total, tokens_total, batches = masked_total + m, tokens_total + int(lengths.sum()), batches + 1
        if limit is not None and batches >= limit:
            break
    return {"encoder_fwd": encoder, "logits_fwd": logits, "masked": masked_total, "tokens": tokens_total,
            "batches": batches, "hidden": h, "ffn": f, "items": n_items}


def rates(work: dict[str, float]) -> dict[str, float]:
    """GFLOP/s of torch.mm at each part's mean shapes."""
    m = max(1, round(work["masked"] / work["batches"]))
    rows = max(1, round(work["tokens"] / work["batches"]))
    h, n, f = int(work["hidden"]), int(work["items"]), int(work["ffn"])
    return {"logits_fwd": matmul_gflops(m, h, n), "logits_bwd": matmul_gflops(m, n, h),
            "encoder": max(matmul_gflops(rows, h, f), matmul_gflops(rows, h, 3 * h))}


def timed_batches(model: Bert4Rec, sequences: list[list[int]], limit: int) -> float:
    """Seconds of `limit` training steps (forward, loss, backward, Adam) as `fit` runs them."""
    net, optimizer = model.net, torch.optim.Adam(model.net.parameters(), lr=model.options.lr)
    net.train()
    started, done = time.perf_counter(), 0
    for batch in model.masked_batches(sequences, epoch=1):
        optimizer.zero_grad(set_to_none=True)
        model.masked_loss(*batch).backward()
        optimizer.step()
        done += 1
        if done >= limit:
            break
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=55_000)
    parser.add_argument("--batches", type=int, default=None, help="time only the first N batches")
    args = parser.parse_args()
    work = work_folder(args.tracks)
    train = pl.read_parquet(work / "train.parquet")
    items = ItemVectors(pl.read_parquet(work / "tracks.parquet")["track_id"].to_list(), np.load(work / "vectors.npy"))
    load_before = os.getloadavg()[0]

    model = Bert4Rec(**{**OPTIONS, "max_epochs": 0})  # builds the net and the sequences without training
    model.fit(train, items)
    sequences = model.training_sequences(train)
    work_done = epoch_work(model, sequences, args.batches)
    before = rates(work_done)
    if args.batches is None:
        model = Bert4Rec(**OPTIONS).fit(train, items)
        seconds = model.report.epochs[0].seconds
    else:
        seconds = timed_batches(model, sequences, args.batches)
    after = rates(work_done)
    best = {part: max(before[part], after[part]) for part in before}
    bound = {"encoder (fwd + bwd)": 3 * work_done["encoder_fwd"] / best["encoder"] / 1e9,
             "logits forward": work_done["logits_fwd"] / best["logits_fwd"] / 1e9,
             "logits backward": work_done["logits_fwd"] / best["logits_bwd"] / 1e9}
    total = sum(bound.values())
    load_after = os.getloadavg()[0]

    scope = f"first {work_done['batches']} batches" if args.batches else f"one epoch ({work_done['batches']} batches)"
    print(f"BERT4Rec, {args.tracks} tracks, {len(sequences)} training sequences, max length 300, full softmax over "
          f"{work_done['items']} tracks, hidden {work_done['hidden']}: {scope}, {work_done['tokens']:,} tokens, "
          f"{work_done['masked']:,} masked")
    print(f"CPU {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load avg {load_before:.1f}-{load_after:.1f}\n")
    print("| part | GFLOP | GFLOP/s (torch.mm, same shapes) | bound s |")
    print("|---|---|---|---|")
    for (part, seconds_part), flops, rate in zip(
            bound.items(),
            (3 * work_done["encoder_fwd"], work_done["logits_fwd"], work_done["logits_fwd"]),
            (best["encoder"], best["logits_fwd"], best["logits_bwd"])):
        print(f"| {part} | {flops / 1e9:,.0f} | {rate:.0f} | {seconds_part:.1f} |")
    print(f"| **compute bound** | {sum((3 * work_done['encoder_fwd'], 2 * work_done['logits_fwd'])) / 1e9:,.0f} "
          f"| – | {total:.1f} |")
    print(f"\nmeasured: {seconds:.1f} s, **{seconds / total:.2f}x the bound** (goal: within 2x)")


if __name__ == "__main__":
    main()
