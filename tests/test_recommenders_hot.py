"""Hot-start recommenders on a planted data set whose right answer is known.

Four taste clusters of 25 tracks each; a cluster's tracks share an audio centroid. Each user listens only
inside one cluster: 10 training plays, 3 later plays held out. Ranking the user's own cluster first gives
Recall@10 ≈ 10/15 = 0.67; a random ranking gives about 10/90 = 0.11.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch
from torch.nn.functional import normalize as nn_functional_normalize

from catalog.histories import histories_from
from catalog.io import ItemVectors
from catalog.registry import option_names
from evaluation.metrics import per_user_metrics
from recommenders.base import RECOMMENDERS
from recommenders.cf import cf_item_factors, interaction_matrix
from recommenders.shuffled import shuffle_items

CLUSTERS, PER_CLUSTER, USERS_PER_CLUSTER, PLAYS, HELD, DIM = 4, 25, 24, 10, 3, 16
RANDOM_RECALL = 10 / (CLUSTERS * PER_CLUSTER - PLAYS)


def planted(seed: int = 0) -> tuple[pl.DataFrame, ItemVectors, dict, dict]:
    """(train interactions, item vectors, validation (histories, relevant), test relevant)."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(CLUSTERS, DIM)) * 2.0
    ids = [f"t{c}_{j:02d}" for c in range(CLUSTERS) for j in range(PER_CLUSTER)]
    matrix = np.repeat(centroids, PER_CLUSTER, axis=0) + rng.normal(scale=0.5, size=(len(ids), DIM))
    start = datetime(2019, 2, 1)
    train_rows, held = [], {}
    for c in range(CLUSTERS):
        for n in range(USERS_PER_CLUSTER):
            user = f"u{c}_{n:02d}"
            chosen = rng.choice(PER_CLUSTER, PLAYS + HELD, replace=False)
            tracks = [f"t{c}_{j:02d}" for j in chosen]
            for minute, track in enumerate(tracks[:PLAYS]):
                train_rows.append((user, track, start + timedelta(minutes=minute + 60 * n), 1))
            held[user] = set(tracks[PLAYS:])
    train = pl.DataFrame(train_rows, schema={"user_id": pl.String, "track_id": pl.String,
                                             "timestamp": pl.Datetime("us"), "count": pl.Int32}, orient="row")
    histories = histories_from(train)
    users = sorted(held)
    validation_relevant = {u: held[u] for u in users[::2]}
    test_relevant = {u: held[u] for u in users[1::2]}
    return train, ItemVectors(ids, matrix.astype(np.float32)), (histories, validation_relevant), test_relevant


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread is faster than two competing for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return planted()


def recall_at_10(model, train, relevant) -> float:
    histories = histories_from(train)
    rankings = model.recommend({u: histories[u] for u in relevant}, 10)
    table = per_user_metrics(rankings, relevant, ks=[10], metrics=("recall",))
    return float(table["value"].mean())


FAST = {
    "popularity": {},
    "ease": {"l2": 10.0},
    "shallow": {"max_epochs": 15, "batch_size": 64},
    "bert4rec": {"max_epochs": 40, "batch_size": 16, "patience": 5, "max_len": 20},
    "contrastive": {"max_epochs": 30, "batch_size": 32, "cf_dim": 8, "dim": 16, "hidden": 32},
    "hybrid": {"max_epochs": 40, "batch_size": 16, "dim": 16, "hidden": 32, "lr": 3e-3},
}
CONTENT = ["shallow", "bert4rec", "contrastive", "hybrid"]


def fitted(name, data, items=None, **extra):
    train, vectors, validation, _ = data
    model = RECOMMENDERS[name](**{**FAST[name], **extra})
    return model.fit(train, vectors if items is None else items, validation)


@pytest.mark.parametrize("name", ["ease", *CONTENT])
def test_learns_planted_clusters(data, name):
    train, _, _, test = data
    recall = recall_at_10(fitted(name, data), train, test)
    assert recall > 0.5 > 3 * RANDOM_RECALL, recall


def test_popularity_is_near_random_on_flat_popularity(data):
    train, _, _, test = data
    assert recall_at_10(fitted("popularity", data), train, test) < 0.3


@pytest.mark.parametrize("name", ["shallow", "bert4rec", "contrastive"])
def test_true_vectors_beat_shuffled_twin(data, name):
    """(The hybrid's MLP can memorise each track from its vector's noise, so its twin is not a control here.)"""
    train, vectors, _, test = data
    true = recall_at_10(fitted(name, data), train, test)
    shuffled = recall_at_10(fitted(name, data, items=shuffle_items(vectors, seed=1)), train, test)
    assert true > shuffled + 0.2, (true, shuffled)


@pytest.mark.parametrize("name", list(FAST))
def test_save_load_history_candidates_determinism(data, name, tmp_path):
    train, _, _, test = data
    model = fitted(name, data)
    histories = {u: histories_from(train)[u] for u in test}
    before = model.recommend(histories, 20)
    for user, ranked in before.items():
        assert len(ranked) == 20 and not set(ranked) & set(histories[user])
    loaded = type(model).load(model.save(tmp_path / name))
    assert loaded.recommend(histories, 20) == before
    assert fitted(name, data).recommend(histories, 20) == before
    candidates = [f"t1_{j:02d}" for j in range(PER_CLUSTER)]
    restricted = model.recommend(histories, 50, candidates=candidates)
    for user, ranked in restricted.items():
        assert set(ranked) == set(candidates) - set(histories[user])


def test_bert4rec_learns_with_learned_items(data):
    train, _, validation, test = data
    model = RECOMMENDERS["bert4rec"](**{**FAST["bert4rec"], "lr": 3e-3}).fit(train, None, validation)
    assert model.learned_items and not hasattr(model.net, "item_vectors")
    assert recall_at_10(model, train, test) > 0.4


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_cf_item_factors_are_svd_factors_with_singular_values_to_a_power(data, power):
    """A = V (S/s₁)^power: orthogonal columns of norm (s_k/s₁)^power; with power 1, A Aᵀ = the rank-k
    co-play approximation V S² Vᵀ scaled by 1/s₁² (checked against numpy's SVD of the play matrix)."""
    train = data[0]
    factors = cf_item_factors(train, 8, singular_power=power)
    _, x = interaction_matrix(train, factors.ids)
    _, s, vt = np.linalg.svd(x.toarray().astype(np.float64), full_matrices=False)
    a = factors.matrix.astype(np.float64)
    gram = a.T @ a
    np.testing.assert_allclose(np.diag(gram), (s[:8] / s[0]) ** (2 * power), rtol=1e-4)
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-5)
    if power == 1.0:
        np.testing.assert_allclose(a @ a.T, (vt[:8].T * s[:8] ** 2) @ vt[:8] / s[0] ** 2, atol=1e-5)


def test_bert4rec_cf_initialised_table_starts_from_co_plays_and_learns_faster(data):
    """item_init="cf": the learned table starts as the training plays' CF factors (RMS row norm 1), in which
    tracks of one taste cluster lie together, so two epochs reach a recall that random init does not."""
    train, _, validation, test = data
    options = {**FAST["bert4rec"], "lr": 3e-3, "max_epochs": 2, "patience": 2}
    untrained = RECOMMENDERS["bert4rec"](**{**options, "lr": 1e-12, "item_init": "cf"}).fit(train, None)
    table = nn_functional_normalize(untrained.net.item_table.detach())
    expected = cf_item_factors(train, table.shape[1]).subset(untrained.item_ids).matrix
    assert torch.allclose(untrained.net.item_table.detach().pow(2).sum(1).mean(), torch.tensor(1.0), atol=1e-4)
    assert torch.allclose(table, nn_functional_normalize(torch.from_numpy(expected)), atol=1e-4)
    cluster = torch.tensor([int(i[1]) for i in untrained.item_ids])
    same = (cluster[:, None] == cluster[None]) & ~torch.eye(len(cluster), dtype=torch.bool)
    cosine = table @ table.T
    assert cosine[same].mean() > cosine[cluster[:, None] != cluster[None]].mean() + 0.3
    cf = recall_at_10(RECOMMENDERS["bert4rec"](**options, item_init="cf").fit(train, None, validation), train, test)
    scratch = recall_at_10(RECOMMENDERS["bert4rec"](**options).fit(train, None, validation), train, test)
    assert cf > 0.5 and cf > scratch + 0.1, (cf, scratch)
    with pytest.raises(ValueError, match="item_init"):
        RECOMMENDERS["bert4rec"](item_init="svd")


def test_bert4rec_cut_vocabulary_keeps_rare_plays_as_unknown_token(data):
    """With max_items the learned table holds only the most played tracks; a play of any other track stays in
    the input as the unknown-item token (it changes the scores) and is never recommended."""
    train, _, _, test = data
    model = RECOMMENDERS["bert4rec"](**{**FAST["bert4rec"], "max_epochs": 2, "max_items": 60}).fit(train, None)
    assert len(model.item_ids) == 60 and model.net.special.shape[0] == 3
    unknown = len(model.item_ids) + 2
    rare = sorted(set(train["track_id"]) - set(model.item_ids))[0]
    known = model.item_ids[:3]
    assert model.item_rows([known[0], rare, "never-seen", known[1]]) == [0, unknown, unknown, 1]
    with torch.no_grad():
        with_rare = model.score(["u"], [model.item_rows(known + [rare])])
        without = model.score(["u"], [model.item_rows(known)])
    assert with_rare.shape == (1, 60) and not torch.allclose(with_rare, without)
    ranked = model.recommend({"u": known + [rare]}, 70)["u"]
    assert len(ranked) == 57 and set(ranked) <= set(model.item_ids) - set(known)


@pytest.mark.parametrize("name", ["shallow", "contrastive", "hybrid"])
def test_cold_items_ranked_from_audio(data, name):
    """New tracks near cluster 2's audio centroid are ranked first for cluster-2 users, last for others."""
    train, vectors, _, _ = data
    model = fitted(name, data)
    rng = np.random.default_rng(5)
    centroid = vectors.matrix[[vectors.ids.index(f"t2_{j:02d}") for j in range(PER_CLUSTER)]].mean(0)
    others = vectors.matrix[[vectors.ids.index(f"t0_{j:02d}") for j in range(PER_CLUSTER)]].mean(0)
    new = ItemVectors([f"new{j}" for j in range(10)], np.concatenate([
        centroid + rng.normal(scale=0.5, size=(5, DIM)), others + rng.normal(scale=0.5, size=(5, DIM))
    ]).astype(np.float32))
    model.add_items(new)
    histories = histories_from(train)
    ranked = model.recommend({"u2_00": histories["u2_00"], "u0_00": histories["u0_00"]}, 5, candidates=new.ids)
    assert set(ranked["u2_00"]) == {f"new{j}" for j in range(5)}
    assert set(ranked["u0_00"]) == {f"new{j}" for j in range(5, 10)}
    if name == "contrastive":
        shared = model.embed_audio(new.matrix)
        assert shared.shape == (10, FAST[name]["dim"]) and np.allclose(np.linalg.norm(shared, axis=1), 1, atol=1e-5)


def test_unknown_candidate_is_a_clear_error(data):
    model = fitted("popularity", data)
    with pytest.raises(KeyError, match="unknown to the model"):
        model.recommend({"u0_00": ["t0_00"]}, 5, candidates=["nope"])


def test_fit_fingerprint_ignores_unplayed_tracks_only_where_fit_never_reads_them(monkeypatch):
    """A new batch of unplayed tracks leaves the trained models' fingerprint (so the stored model is reused),
    but not knn's (its index holds every track); any change of a play, a played vector, the class's version or
    an option changes both."""
    from recommenders.base import fit_fingerprint
    from recommenders.knn import ItemKNN

    train, items, _, _ = planted()
    validation = train.head(5)
    extra = ItemVectors(items.ids + ["new_0", "new_1"],
                        np.vstack([items.matrix, np.ones((2, DIM), np.float32)]))
    shallow_class = RECOMMENDERS["shallow"]
    other_options = {shallow_class: {"lr": 3e-3}, ItemKNN: {"standardize": False}}
    before = {cls: fit_fingerprint(cls(), train, validation, items) for cls in (shallow_class, ItemKNN)}
    assert fit_fingerprint(shallow_class(), train, validation, extra) == before[shallow_class]
    assert fit_fingerprint(ItemKNN(), train, validation, extra) != before[ItemKNN]
    played = train["track_id"][0]
    nudged = ItemVectors(items.ids, items.matrix.copy())
    nudged.matrix[items.ids.index(played), 0] += 1e-3
    fewer = train.slice(1)
    for cls in (shallow_class, ItemKNN):
        assert fit_fingerprint(cls(), train, validation, items) == before[cls]  # a fresh instance: same inputs
        assert fit_fingerprint(cls(), train, validation, nudged) != before[cls]
        assert fit_fingerprint(cls(), fewer, validation, items) != before[cls]
        assert fit_fingerprint(cls(**other_options[cls]), train, validation, items) != before[cls]  # options
        with monkeypatch.context() as patch:
            patch.setattr(cls, "version", cls.version + ".1")  # code changed
            assert fit_fingerprint(cls(), train, validation, items) != before[cls]
    # row order is not content: a shuffled table fingerprints the same
    assert fit_fingerprint(shallow_class(), train.sample(fraction=1.0, shuffle=True, seed=1), validation,
                           items) == before[shallow_class]
    # the side tables a model reads are inputs of its fit
    tracks = pl.DataFrame({"track_id": items.ids, "artist_id": [i[:2] for i in items.ids]})
    moved = tracks.with_columns(pl.when(pl.col("track_id") == played).then(pl.lit("elsewhere"))
                                .otherwise(pl.col("artist_id")).alias("artist_id"))
    acarec = RECOMMENDERS["acarec"]
    with_tracks = fit_fingerprint(acarec(), train, validation, items, {"tracks": tracks})
    assert fit_fingerprint(acarec(), train, validation, items, {"tracks": tracks}) == with_tracks
    assert fit_fingerprint(acarec(), train, validation, items, {"tracks": moved}) != with_tracks


# ------------------------------------------------------------------------------ options through save/load

ROUND_TRIP = {  # non-default options (small models) per recommender; a class not listed uses its defaults
    "knn": {"standardize": False},
    "popularity": {},
    "ease": {"l2": 12.5, "max_items": 90},
    "shallow": {**FAST["shallow"], "max_epochs": 2, "margin": 0.3, "seed": 4},
    "bert4rec": {**FAST["bert4rec"], "max_epochs": 2, "item_init": "cf", "dropout": 0.05},
    "contrastive": {**FAST["contrastive"], "max_epochs": 2, "temperature": 0.2},
    "hybrid": {**FAST["hybrid"], "max_epochs": 2, "seed": 2},
    "acarec": {"max_epochs": 2, "cf_dim": 8, "hidden": 16, "attn_dim": 8, "cf_power": 1.0, "seed": 3},
}


def planted_tracks(items: ItemVectors) -> pl.DataFrame:
    """The `tracks` side table of the planted data: five artists per taste cluster."""
    return pl.DataFrame({"track_id": items.ids, "artist_id": [f"a{i[1]}_{int(i[3:]) % 5}" for i in items.ids]})


def test_round_trip_covers_the_required_recommenders():
    assert {"knn", "popularity", "ease"} <= set(RECOMMENDERS)
    torch_models = [name for name in RECOMMENDERS if name in ROUND_TRIP and RECOMMENDERS[name].needs_gpu
                    and name != "ease"]
    assert torch_models  # at least one neural model (shallow, bert4rec, ...)


@pytest.mark.parametrize("name", sorted(RECOMMENDERS))
def test_every_recommender_round_trips_its_options_through_save_load(data, name, tmp_path):
    cls = RECOMMENDERS[name]
    train, vectors, validation, test = data
    options = dict(ROUND_TRIP.get(name, {}))
    if name not in ROUND_TRIP and "max_epochs" in option_names(cls):
        options["max_epochs"] = 1
    model = cls(**options)
    assert {key: getattr(model.options, key) for key in options} == options
    model.use_side_tables({"tracks": planted_tracks(vectors), "interactions": train}
                          if cls.side_tables else {})
    model.fit(train, vectors if cls.uses_content else None, validation)
    folder = model.save(tmp_path / name)
    config = json.loads((folder / "config.json").read_text())
    assert config["recommender"] == name and config["version"] == cls.version
    assert config["options"] == model.options_dict()
    assert {key: config["options"][key] for key in options} == options
    assert sorted(config["options"]) == sorted(option_names(cls))
    loaded = cls.load(folder)
    assert type(loaded) is cls and loaded.options == model.options
    assert loaded.options_dict() == model.options_dict()
    histories = {u: histories_from(train)[u] for u in sorted(test)[:6]}
    assert loaded.recommend(histories, 10) == model.recommend(histories, 10)


def test_bert4rec_last_position_only_gives_the_full_encoders_last_states():
    from recommenders.bert4rec import Bert4RecNet

    torch.manual_seed(0)
    net = Bert4RecNet(n_items=50, hidden=16, max_len=12).eval()
    tokens = torch.randint(0, 50, (5, 12))
    tokens[1, :4] = net.pad  # left padding: the key mask takes part
    tokens[:, -1] = net.mask
    with torch.no_grad():
        full, _ = net(tokens)
        last, _ = net(tokens, last_only=True)
    assert last.shape == (5, 1, 16)
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-5, atol=1e-5)
