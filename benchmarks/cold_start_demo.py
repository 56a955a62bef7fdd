"""Cold start on the demo catalog: ACARec against content-only baselines on semi-cold and cold tracks.

Split: `evaluation.cold_splits.cold_split` at the 0.2 time quantile, with `--holdout-artists` of the artists
withheld from training so that the cold scenario has new artists (the demo catalog releases every artist in
its first batch). Systems per backbone (`recommenders.cold_start`), registered recommenders with their default
options: knn (audio cosine), shallow, contrastive (audio tower), hybrid (audio-MLP item factors) and acarec;
early stopping never sees a test user. New tracks are ranked all together (`--pool new`) or per scenario
(`--pool scenario`). Every system is fit once per training seed (`--seeds`, default 0,1,2) and each user's
metrics are averaged over the fits.

Prints, per scenario and backbone: mean Recall@20 and NDCG@20 with 95% t-intervals over the test users, and
the paired two-sided Wilcoxon p-value of each baseline against acarec on the same users
(`evaluation.cold_eval.cold_start_summary`, the pipeline's cold-start table).
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
from evaluation.cold_eval import cold_start_summary  # noqa: E402
from evaluation.cold_splits import cold_split  # noqa: E402
from recommenders.base import RECOMMENDERS  # noqa: E402
from recommenders.cold_start import run_cold_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "acarec"
SYSTEMS: tuple[str, ...] = ("knn", "shallow", "contrastive", "hybrid", REFERENCE)  # registered recommenders


def cold_systems(names: tuple[str, ...] = SYSTEMS) -> dict:
    """name -> (registered class, default options), the form `run_cold_experiment` takes."""
    return {name: (RECOMMENDERS[name], {}) for name in names}


def _interval(row: dict) -> str:
    if row["ci_low"] is None:  # one user: no interval
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def table(per_user: pl.DataFrame, k: int, reference: str = REFERENCE) -> pl.DataFrame:
    """One row per (scenario, backbone, recommender) over all relevant pairs: Recall@k and NDCG@k with CIs,
    n, and the p-values against `reference`, from `cold_start_summary`."""
    summary = cold_start_summary(per_user, reference, k, "demo").filter(pl.col("novelty") == "all")
    rows = []
    for (scenario, backbone, recommender), group in summary.group_by(["scenario", "backbone", "recommender"],
                                                                      maintain_order=True):
        by_metric = {r["metric"]: r for r in group.iter_rows(named=True)}
        row = {"scenario": scenario, "backbone": backbone, "recommender": recommender,
               "n": by_metric["recall"]["n"]}
        for metric in ("recall", "ndcg"):
            p = by_metric[metric]["p_vs_reference"]
            row[f"{metric}@{k}"] = _interval(by_metric[metric])
            row[f"p {metric}"] = "-" if p is None else f"{p:.1e}"
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
        per_user = run_cold_experiment(split, interactions, tracks, items, cold_systems(), (args.k,), seeds,
                                       ("recall", "ndcg"), args.pool)
        blocks.append(per_user.with_columns(pl.lit(backbone).alias("backbone")))
    if not blocks:
        sys.exit(f"no backbone of {args.backbones!r} has complete embeddings under {args.embeddings}")
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, fmt_str_lengths=40):
        print(table(pl.concat(blocks), args.k))


if __name__ == "__main__":
    main()
