"""Sanity check on real listening data: popularity, EASE and BERT4Rec (learned items) on Music4All-Onion.

The last week of February 2019 is the test period (hot split: known users, known tracks, new pairs); its
users are halved at random into validation (EASE's λ, BERT4Rec's early stopping) and test (the numbers
printed). Usage: python benchmarks/music4all_sanity.py [path/to/val.pqt]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.histories import histories_from  # noqa: E402
from catalog.music4all import read_split_parquet  # noqa: E402
from evaluation.metrics import per_user_metrics  # noqa: E402
from evaluation.splits import hot_split, relevant_sets  # noqa: E402
from evaluation.stats import paired_test, summarize  # noqa: E402
from recommenders.base import Recommender  # noqa: E402
from recommenders.bert4rec import Bert4Rec  # noqa: E402
from recommenders.ease import Ease  # noqa: E402
from recommenders.popularity import Popularity  # noqa: E402
from recommenders.training import validation_metric  # noqa: E402

DEFAULT_PATH = Path("/work/shared/data/music4all_onion/val.pqt")
METRICS = ("hit_rate", "recall", "ndcg")
log = logging.getLogger("musicrec.sanity")


def _per_user(model: Recommender, histories: dict, relevant: dict, k: int) -> pl.DataFrame:
    rankings = model.recommend({u: histories[u] for u in relevant if u in histories}, k)
    return per_user_metrics(rankings, relevant, ks=[k], metrics=METRICS)


def run_music4all_sanity(
    path: str | Path = DEFAULT_PATH,
    cutoff: datetime = datetime(2019, 2, 22),
    k: int = 50,
    ease_l2_grid: tuple[float, ...] = (50.0, 200.0, 500.0, 1000.0),
    ease_max_items: int = 8_000,
    bert4rec_options: dict | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Fit the three models on the training weeks and return the `metrics` rows of the test users (@`k`),
    plus a column p_vs_popularity (paired Wilcoxon, per metric). EASE's λ is the grid value with the best
    validation NDCG@`k`; BERT4Rec stops early on validation NDCG@`k`."""
    interactions = read_split_parquet(path)
    split = hot_split(interactions, cutoff=cutoff, seed=seed)
    histories = histories_from(split.train)
    validation = (histories, relevant_sets(split.validation))
    test = relevant_sets(split.test)
    log.info("train %d plays / %d users / %d tracks; validation %d users; test %d users",
             split.train.height, split.train["user_id"].n_unique(), split.train["track_id"].n_unique(),
             len(validation[1]), len(test))

    models: dict[str, Recommender] = {"popularity": Popularity().fit(split.train, None)}
    log.info("popularity: validation NDCG@%d %.4f", k, validation_metric(models["popularity"].recommend, validation, k))
    best_l2, best_score = None, -1.0
    for l2 in ease_l2_grid:
        candidate = Ease(l2=l2, max_items=ease_max_items).fit(split.train, None)
        score = validation_metric(candidate.recommend, validation, k)
        log.info("ease l2 %.0f: validation NDCG@%d %.4f", l2, k, score)
        if score > best_score:
            best_l2, best_score, models["ease"] = l2, score, candidate
    log.info("ease: chose l2 %.0f", best_l2)
    options = {"learned_items": True, "seed": seed, **(bert4rec_options or {})}
    started = time.perf_counter()
    models["bert4rec"] = Bert4Rec(**options).fit(split.train, None, validation)
    log.info("bert4rec: %.0f s", time.perf_counter() - started)

    per_user = {name: _per_user(model, histories, test, k) for name, model in models.items()}
    rows = []
    for name, table in per_user.items():
        summary = summarize(table, experiment="music4all_sanity", dataset="music4all_onion_val",
                            recommender=name, scenario="hot", backbone="none")
        p_values = {
            metric: paired_test(_values(table, metric), _values(per_user["popularity"], metric))
            if name != "popularity" else None
            for metric in METRICS
        }
        rows.append(summary.with_columns(
            pl.col("metric").replace_strict(p_values, return_dtype=pl.Float64).alias("p_vs_popularity")))
    return pl.concat(rows)


def _values(table: pl.DataFrame, metric: str) -> np.ndarray:
    return table.filter(pl.col("metric") == metric).sort("user_id")["value"].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--bert4rec-max-items", type=int, default=3000,
                        help="BERT4Rec learns only the N most played items (0: every training item)")
    parser.add_argument("--bert4rec-item-init", choices=("cf", "random"), default="cf",
                        help="start BERT4Rec's learned item table from the training plays' CF factors or at random")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    # chosen on validation NDCG@50 (README, "Real listening events"): CF-initialised table of the 3,000 most
    # played items, lr 3e-4 (.0170; random init .0114 at best)
    options = {"lr": 3e-4, "batch_size": 32, "patience": 10, "max_epochs": args.max_epochs,
               "max_items": args.bert4rec_max_items or None, "item_init": args.bert4rec_item_init}
    table = run_music4all_sanity(args.path, bert4rec_options=options)
    with pl.Config(tbl_rows=50, tbl_cols=20, float_precision=4, tbl_width_chars=160):
        print(table.select("recommender", "metric", "k", "value", "ci_low", "ci_high", "n", "p_vs_popularity"))


if __name__ == "__main__":
    main()
