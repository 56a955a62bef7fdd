"""Cold start on the demo catalog: ACARec against content-only baselines on semi-cold and cold tracks.

Split: `evaluation.cold_splits.cold_split` at the 0.2 time quantile, with `--holdout-artists` of the artists
withheld from training so that the cold scenario has new artists (the demo catalog releases every artist in
its first batch). Systems per backbone: knn (audio cosine), contrastive (audio tower), hybrid (audio-MLP item
factors) and acarec. acarec stops early on the cold validation users (new tracks); contrastive and hybrid
rank new tracks from audio exactly as known ones, so they stop early on the same validation users' later
plays of known tracks (their `validation_metric` ranks the items they were fit on). No test user is used
before the reported numbers.

Prints, per scenario and backbone: mean Recall@20 and NDCG@20 with 95% t-intervals over the test users, and
the paired two-sided Wilcoxon p-value of each baseline against acarec on the same users.
Usage: python benchmarks/cold_start_demo.py [--catalog DIR --embeddings DIR --backbones a,b --k 20]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402
import torch  # noqa: E402

from catalog.io import ItemVectors  # noqa: E402
from embedders.runner import read_backbone  # noqa: E402
from evaluation.cold_eval import evaluate_cold  # noqa: E402
from evaluation.cold_splits import ColdSplit, cold_split, relevant_by  # noqa: E402
from evaluation.splits import hot_split, relevant_sets  # noqa: E402
from evaluation.stats import compare_systems, summarize  # noqa: E402
from recommenders.acarec import AcaRec  # noqa: E402
from recommenders.base import Recommender, histories_from  # noqa: E402
from recommenders.contrastive import Contrastive  # noqa: E402
from recommenders.hybrid import Hybrid  # noqa: E402
from recommenders.knn import ItemKNN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "acarec"


def hot_validation(interactions: pl.DataFrame, tracks: pl.DataFrame, split: ColdSplit) -> dict[str, set[str]]:
    """The cold validation users' plays after the cutoff of tracks known in training (new pairs only)."""
    withheld = tracks.filter(pl.col("artist_id").is_in(list(split.withheld_artists)))["track_id"]
    hot = hot_split(interactions.filter(~pl.col("track_id").is_in(withheld.implode())), cutoff=split.cutoff)
    users = split.validation["user_id"].unique().implode()
    return relevant_sets(pl.concat([hot.validation, hot.test]).filter(pl.col("user_id").is_in(users)))


def fit_systems(split: ColdSplit, interactions: pl.DataFrame, tracks: pl.DataFrame, items: ItemVectors,
                seed: int) -> dict[str, Recommender]:
    """Fit knn, contrastive, hybrid and acarec on `split.train` with the audio vectors `items`; every model
    knows the new tracks afterwards."""
    histories = histories_from(split.train)
    new = items.subset([t for t in items.ids if t in split.scenario])
    hot = (histories, hot_validation(interactions, tracks, split))
    systems: dict[str, Recommender] = {}
    for name, build, validation in (
        ("knn", lambda: ItemKNN(), None),
        ("contrastive", lambda: Contrastive(seed=seed), hot),
        ("hybrid", lambda: Hybrid(seed=seed), hot),
        (REFERENCE, lambda: AcaRec(dict(zip(tracks["track_id"], tracks["artist_id"])), seed=seed),
         (histories, relevant_by(split.validation))),
    ):
        started = time.perf_counter()
        model = build().fit(split.train, items, validation)
        if hasattr(model, "add_items") and name != REFERENCE:
            model.add_items(new)
        systems[name] = model
        print(f"  fit {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return systems


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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    tracks = pl.read_parquet(args.catalog / "tracks.parquet")
    interactions = pl.read_parquet(args.catalog / "interactions.parquet")
    split = cold_split(interactions, tracks, seed=args.seed, holdout_artists=args.holdout_artists)
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
        systems = fit_systems(split, interactions, tracks, items, args.seed)
        blocks.append(evaluate_cold(systems, split, (args.k,), metrics=("recall", "ndcg"))
                      .with_columns(pl.lit(backbone).alias("backbone")))
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, fmt_str_lengths=40):
        print(table(pl.concat(blocks), args.k))


if __name__ == "__main__":
    main()
