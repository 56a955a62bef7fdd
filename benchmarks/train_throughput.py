"""Training throughput and peak memory of BERT4Rec (sequences/s) and the shallow model (rows/s).

Synthetic data at a stated size (default 5,000 users × 2,000 items × dim 200, 20 plays per user): each model
trains `--epochs` epochs without validation in its own spawned process, so each peak memory figure is that
process's own (peak RSS from getrusage on CPU; torch.cuda.max_memory_allocated on GPU).
Usage: python benchmarks/train_throughput.py [--users N --items N --dim N --plays N --epochs N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(model_name: str, users: int, items: int, dim: int, plays: int, epochs: int, threads: int) -> dict:
    """Fit one model in this process (`threads` CPU threads, 0 = torch's default); return its throughput (last
    epoch) and peak memory."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    from catalog.synthetic import random_plays
    from recommenders.base import RECOMMENDERS

    train, vectors = random_plays(users, items, dim, plays)
    model = RECOMMENDERS[model_name](max_epochs=epochs)
    started = time.perf_counter()
    model.fit(train, vectors, None)
    last = model.report.epochs[-1]
    cuda = model.device.type == "cuda"
    return {
        "model": model_name,
        "unit": "sequences/s" if model_name == "bert4rec" else "rows/s",
        "throughput": last.examples_per_s,
        "epoch_s": last.seconds,
        "fit_s": time.perf_counter() - started,
        "peak_mib": (torch.cuda.max_memory_allocated() if cuda else
                     resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20,
        "memory": "cuda max allocated" if cuda else "process peak RSS",
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--plays", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in ("bert4rec", "shallow"):
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure, (name, args.users, args.items, args.dim, args.plays, args.epochs,
                                             args.threads)))
    print(f"size: {args.users} users × {args.items} items × dim {args.dim}, {args.plays} plays/user, "
          f"{args.epochs} epochs, throughput of the last epoch; {platform.processor() or platform.machine()}")
    print(f"{'model':<10} {'throughput':>12} {'unit':<12} {'epoch s':>8} {'fit s':>7} {'peak MiB':>9}  memory / device")
    for r in rows:
        print(f"{r['model']:<10} {r['throughput']:>12.0f} {r['unit']:<12} {r['epoch_s']:>8.1f} {r['fit_s']:>7.1f} "
              f"{r['peak_mib']:>9.0f}  {r['memory']} / {r['device']}")


if __name__ == "__main__":
    main()
