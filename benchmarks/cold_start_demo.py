"""Cold start on the demo catalog: ACARec against content-only baselines on semi-cold and cold tracks.

Split: `evaluation.cold_splits.cold_split` at the 0.2 time quantile, with `--holdout-artists` of the artists
withheld from training so that the cold scenario has new artists (the demo catalog releases every artist in
its first batch). Systems per backbone (`evaluation.cold_experiment`): knn (audio cosine), shallow, contrastive
(audio tower), hybrid (audio-MLP item factors) and acarec; early stopping never sees a test user. New tracks
are ranked all together (`--pool new`) or per scenario (`--pool scenario`). Every system is fit once per
training seed (`--seeds`, default 0,1,2) and each user's metrics are averaged over the fits.

Prints, per scenario and backbone: mean Recall@20 and NDCG@20 with 95% t-intervals over the test users, and
the paired two-sided Wilcoxon p-value of each baseline against acarec on the same users.
Usage: python benchmarks/cold_start_demo.py [--catalog DIR --embeddings DIR --backbones a,b --k 20 --seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402
import torch  # noqa: E402

from embedders.runner import read_backbone  # noqa: E402
from evaluation.cold_experiment import REFERENCE, run_cold_experiment  # noqa: E402
from evaluation.cold_splits import cold_split  # noqa: E402
from evaluation.stats import compare_systems, summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def table(per_user: pl.DataFrame, k: int) -> pl.DataFrame:
    """One row per (scenario, backbone, recommender): Recall@k and NDCG@k with CIs, n, p vs acarec."""
    rows = []
    scored = per_user.filter((pl.col("novelty") == "all") & (pl.col("k") == k))
    for (scenario, backbone), group in scored.group_by(["scenario", "backbone"], maintain_order=True):
        reference = group.filter(pl.col("recommender") == REFERENCE).select("user_id", "metric", "k", "value")
        for recommender, system in group.group_by("recommender", maintain_order=True):
            per = system.select("user_id", "metric", "k", "value")
            summary = {r["metric"]: r for r in summarize(per).iter_rows(named=True)}
            p = ({} if recommender[0] == REFERENCE else
                 {r["metric"]: r["p_value"] for r in compare_systems(per, reference).iter_rows(named=True)})
            row = {"scenario": scenario, "backbone": backbone, "recommender": recommender[0],
                   "n": summary["recall"]["n"]}
            for metric in ("recall", "ndcg"):
                s = summary[metric]
                row[f"{metric}@{k}"] = f"{s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
                row[f"p {metric}"] = "-" if metric not in p else f"{p[metric]:.1e}"
            rows.append(row)
    return pl.DataFrame(rows).sort(["scenario", "backbone", "recommender"], descending=[True, False, False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT / "storage/catalog/demo")
    parser.add_argument("--embeddings", type=Path, default=ROOT / "storage/embeddings")
    parser.add_argument("--backbones", default="handcrafted,musicnn_mtt")
    parser.add_argument("--holdout-artists", type=float, default=0.2)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--pool", choices=("new", "scenario"), default="new",
                        help="rank all new tracks together (default) or each scenario's new tracks apart")
    parser.add_argument("--seeds", default="0,1,2",
                        help="training seeds, comma-separated: each user's metrics are averaged over the seeds' "
                             "fits before the intervals and paired tests (the split stays seed 0)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tracks = pl.read_parquet(args.catalog / "tracks.parquet")
    interactions = pl.read_parquet(args.catalog / "interactions.parquet")
    split = cold_split(interactions, tracks, seed=0, holdout_artists=args.holdout_artists)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    print(f"cutoff {split.cutoff}; withheld artists {len(split.withheld_artists)}; new tracks: "
          + ", ".join(f"{s} {len(split.candidates(s))}" for s in ("semi_cold", "cold")))
    blocks = []
    for backbone in args.backbones.split(","):
        folder = args.embeddings / backbone
        if not folder.exists():
            print(f"  skip {backbone}: no embeddings at {folder}")
            continue
        items = read_backbone(folder)
        missing = tracks.filter(~pl.col("track_id").is_in(items.ids)).height
        if missing:
            print(f"  skip {backbone}: no vector for {missing} of {tracks.height} tracks (still materialising?)")
            continue
        print(f"{backbone}:", flush=True)
        per_user = run_cold_experiment(split, interactions, tracks, items, (args.k,), seeds, ("recall", "ndcg"),
                                       args.pool)
        blocks.append(per_user.with_columns(pl.lit(backbone).alias("backbone")))
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, fmt_str_lengths=40):
        print(table(pl.concat(blocks), args.k))


if __name__ == "__main__":
    main()
