"""Anchor: BERT4Rec training throughput (sequences/s) and NDCG@10, ours (`recommenders.bert4rec`) against RecBole
1.2.1's BERT4Rec, on the same sequences, the same hyper-parameters and the same metric code.

Data: a synthetic catalog with planted taste structure (`catalog.scale`, small preset: 2,000 tracks in 20 taste
clusters; users with a lognormal number of plays, median 260). Each user's last play is held out; the plays
before it, cut to the last `max_len`, are the training sequence of both systems (RecBole reads them as
pre-split atomic files `bench.{train,valid,test}.inter` with an `item_id_list` column, so it does no sequence
augmentation and trains exactly one instance per user, as ours does).

Model, both: learned item table, hidden 64, 2 layers, 2 heads, FFN 256, dropout 0.1 (hidden and attention),
20 % of the items masked, cross-entropy over all items, Adam lr 1e-3, batch 256, the same number of epochs,
no validation. Throughput is sequences per wall-second of the fastest epoch (the machine may be shared; the
fastest epoch is the least disturbed), 2 torch threads each, both in a child process of this one.

Quality: NDCG@10 (`evaluation.metrics`) of each model's top 10 for every user (training plays removed) against
the held-out play; RecBole's scores come from its `full_sort_predict` and are turned into top-10 lists in its
venv, then judged here by the same code as ours. Popularity's NDCG@10 is given beside them as the floor.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

THREADS = 2
HIDDEN = 64
BATCH = 256
LENGTHS = (50, 200)
RECBOLE_PACKAGES = ["recbole==1.2.1", "numpy<2", "pandas<2.3"]  # RecBole 1.2.1 predates numpy 2 and pandas 3
ATOMIC_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"

# Runs in RecBole's throwaway venv: argv = data folder (holding bench/ and exclude.json), settings JSON. Prints
# one JSON line: epoch_seconds (list of float), sequences (training instances per epoch), top10 (user -> ids).
RECBOLE_SCRIPT = r'''
import json, logging, sys, time
import numpy as np
import torch

folder, settings = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(settings["threads"])
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.model.sequential_recommender.bert4rec import BERT4Rec
from recbole.trainer import Trainer
from recbole.utils import init_seed

sys.argv = sys.argv[:1]  # RecBole's Config parses the command line
config = Config(model="BERT4Rec", dataset="bench", config_dict={
    "data_path": folder, "benchmark_filename": ["train", "valid", "test"],
    "load_col": {"inter": ["user_id", "item_id_list", "item_id"]}, "alias_of_item_id": ["item_id_list"],
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": None,
    "MAX_ITEM_LIST_LENGTH": settings["max_len"], "hidden_size": settings["hidden"], "inner_size": 256,
    "n_layers": 2, "n_heads": 2, "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1, "mask_ratio": 0.2,
    "loss_type": "CE", "train_batch_size": settings["batch"], "learning_rate": 1e-3, "epochs": settings["epochs"],
    "train_neg_sample_args": None, "eval_args": {"order": "TO", "mode": "full", "group_by": "user"},
    "device": "cpu", "use_gpu": False, "seed": settings["seed"], "reproducibility": True, "show_progress": False,
    "checkpoint_dir": folder + "/saved", "state": "WARNING", "worker": 0,
})
init_seed(config["seed"], config["reproducibility"])
logging.getLogger().setLevel(logging.WARNING)
dataset = create_dataset(config)
train_data, _, test_data = data_preparation(config, dataset)
model = BERT4Rec(config, train_data.dataset)
trainer = Trainer(config, model)
epoch_seconds = []
for epoch in range(settings["epochs"]):
    started = time.perf_counter()
    trainer._train_epoch(train_data, epoch)  # what Trainer.fit runs per epoch, without its evaluation
    epoch_seconds.append(time.perf_counter() - started)
model.eval()
test = test_data.dataset
users = test.id2token("user_id", test.inter_feat["user_id"].numpy())
exclude = json.load(open(folder + "/exclude.json"))
known = test.field2token_id["item_id"]
top = {}
with torch.no_grad():
    for start in range(0, len(users), 512):
        rows = slice(start, start + 512)
        batch = Interaction({"item_id_list": test.inter_feat["item_id_list"][rows],
                             "item_length": test.inter_feat["item_length"][rows]})
        scores = model.full_sort_predict(batch)
        scores[:, 0] = -np.inf  # RecBole's padding id
        for row, user in enumerate(users[rows]):
            scores[row, [known[t] for t in exclude[user] if t in known]] = -np.inf
        best = torch.topk(scores, 10, dim=1).indices.numpy()
        for row, user in enumerate(users[rows]):
            top[user] = test.id2token("item_id", best[row]).tolist()
print(json.dumps({"epoch_seconds": epoch_seconds, "sequences": len(train_data.dataset), "top10": top}))
'''


def held_out_data(users: int, seed: int = 0) -> tuple[pl.DataFrame, dict[str, list[str]], dict[str, set[str]]]:
    """(training plays, training histories user -> track ids oldest first, held-out user -> {last track}) of a
    small-preset scale catalog with `users` users of median 260 plays (every user has at least 2 plays)."""
    from catalog.histories import histories_from
    from catalog.scale import generate, preset

    plays = generate(preset("small", n_users=users, median_tracks=260.0, activity_sigma=0.3, seed=seed))
    interactions = plays["interactions"].sort("user_id", "timestamp", "track_id")
    last = interactions.group_by("user_id", maintain_order=True).tail(1)
    train = interactions.join(last.select("user_id", "track_id"), on=["user_id", "track_id"], how="anti")
    histories = histories_from(train)
    return train, histories, {row["user_id"]: {row["track_id"]} for row in last.iter_rows(named=True)}


def write_atomic_files(folder: Path, histories: dict[str, list[str]], held_out: dict[str, set[str]],
                       max_len: int) -> None:
    """RecBole's pre-split atomic files in `folder`/bench/ (one row per user: the last `max_len` training plays
    as item_id_list; item_id is the last training play in train, the held-out play in valid and test) and
    `folder`/exclude.json (user -> all training plays, removed from the top 10 as ours removes them)."""
    (folder / "bench").mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        lines = [ATOMIC_HEADER]
        for user, history in histories.items():
            target = history[-1] if part == "train" else next(iter(held_out[user]))
            lines.append(f"{user}\t{' '.join(history[-max_len:])}\t{target}\n")
        (folder / "bench" / f"bench.{part}.inter").write_text("".join(lines))
    (folder / "exclude.json").write_text(json.dumps(histories))


def ndcg_at_10(rankings: dict[str, list[str]], held_out: dict[str, set[str]]) -> float:
    """Mean NDCG@10 over the held-out users (`evaluation.metrics`; a user without a ranking scores 0)."""
    from evaluation.metrics import per_user_metrics

    return float(per_user_metrics(rankings, held_out, ks=[10], metrics=("ndcg",))["value"].mean())


def fit_ours(train: pl.DataFrame, histories: dict[str, list[str]], max_len: int, epochs: int,
             seed: int = 0) -> tuple[float, list[float], dict[str, list[str]]]:
    """Fit our BERT4Rec (learned items) for `epochs` epochs: (fit seconds, seconds per epoch, top 10 per user)."""
    from recommenders.bert4rec import Bert4Rec

    model = Bert4Rec(learned_items=True, hidden=HIDDEN, layers=2, heads=2, ffn=256, dropout=0.1, mask_prob=0.2,
                     max_len=max_len, batch_size=BATCH, lr=1e-3, max_epochs=epochs, seed=seed, device="cpu")
    started = time.perf_counter()
    model.fit(train, None, None)
    seconds = time.perf_counter() - started
    return seconds, [e.seconds for e in model.report.epochs], model.recommend(histories, 10)


def fit_recbole(histories: dict[str, list[str]], held_out: dict[str, set[str]], max_len: int, epochs: int,
                seed: int = 0) -> dict:
    """RecBole's BERT4Rec in its throwaway venv (`anchors.run_in_venv`): the script's JSON (epoch_seconds,
    sequences, top10)."""
    from benchmarks.anchors import run_in_venv

    with tempfile.TemporaryDirectory(prefix="anchor_bert4rec_") as tmp:
        write_atomic_files(Path(tmp), histories, held_out, max_len)
        settings = {"threads": THREADS, "max_len": max_len, "hidden": HIDDEN, "batch": BATCH, "epochs": epochs,
                    "seed": seed}
        return run_in_venv("recbole", RECBOLE_PACKAGES, RECBOLE_SCRIPT, [tmp, json.dumps(settings)])


def popularity_ndcg(train: pl.DataFrame, histories: dict[str, list[str]], held_out: dict[str, set[str]]) -> float:
    """NDCG@10 of the most-popular baseline (the floor a sequence model should clear)."""
    from recommenders.popularity import Popularity

    return ndcg_at_10(Popularity().fit(train).recommend(histories, 10), held_out)


def measure(quick: bool) -> list[dict]:
    """One row per sequence length (50, 200): sequences/s of the fastest epoch, ours and RecBole's, with both
    models' NDCG@10 on the held-out plays in `quality`."""
    import torch

    from benchmarks.anchors import device_label

    torch.set_num_threads(THREADS)
    users, epochs = (256, 2) if quick else (768, 3)
    train, histories, held_out = held_out_data(users)
    floor = popularity_ndcg(train, histories, held_out)
    rows = []
    for max_len in LENGTHS:
        _, ours_epochs, ours_top = fit_ours(train, histories, max_len, epochs)
        peer = fit_recbole(histories, held_out, max_len, epochs)
        ours_ndcg, peer_ndcg = ndcg_at_10(ours_top, held_out), ndcg_at_10(peer["top10"], held_out)
        rows.append({
            "name": f"BERT4Rec training, max length {max_len}",
            "ours": len(histories) / min(ours_epochs),
            "anchor": peer["sequences"] / min(peer["epoch_seconds"]),
            "unit": "sequences/s",
            "device": device_label(),
            "quality": f"NDCG@10 ours {ours_ndcg:.4f}, RecBole {peer_ndcg:.4f} (popularity {floor:.4f}) after "
                       f"{epochs} epochs, {len(held_out)} held-out last plays",
            "note": f"RecBole 1.2.1 BERT4Rec ({peer['_venv']}); {len(histories)} users, median "
                    f"{int(np.median([len(h) for h in histories.values()]))} training plays, hidden {HIDDEN}, "
                    f"2 layers, 2 heads, batch {BATCH}; fastest of {epochs} epochs; epoch s ours "
                    f"{', '.join(f'{s:.1f}' for s in ours_epochs)}, RecBole "
                    f"{', '.join(f'{s:.1f}' for s in peer['epoch_seconds'])}",
        })
    return rows
