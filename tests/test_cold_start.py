"""Cold start: split labels, the ACARec model on planted data whose answer is decided by the artist's catalog,
its content fallback for new artists, new batches after training, save/load, the cold-start loop over
registered systems and its summary table.

Planted catalog: 4 taste groups of 2 artists; each artist has 6 known tracks and 1 new track released after
the cutoff; each group also has a new artist with 2 tracks (cold). Audio vectors are pure noise, so content
alone cannot tell which group a new track belongs to (knn is at chance: Recall@2 among 8 new tracks ≈ 0.25),
while the artist's known tracks can (acarec should reach ≈ 1.0). Users listen inside their group only.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch

from catalog.histories import histories_from
from catalog.io import ItemVectors
from evaluation.cold_eval import cold_start_summary, evaluate_cold
from evaluation.cold_splits import cold_split, relevant_by, withheld_artist_ids
from recommenders.acarec import AcaRec
from recommenders.base import RECOMMENDERS
from recommenders.cold_start import fit_cold_systems, mean_over_runs, run_cold_experiment
from recommenders.knn import ItemKNN

GROUPS, ARTISTS_PER_GROUP, KNOWN, USERS, DIM = 4, 2, 6, 12, 8
START, CUTOFF = datetime(2024, 1, 1), datetime(2024, 1, 11)
SCHEMA = {"user_id": pl.String, "track_id": pl.String, "timestamp": pl.Datetime("us"), "count": pl.Int32}
FAST = {"cf_dim": 4, "hidden": 16, "attn_dim": 8, "max_epochs": 3, "batch_size": 16}


def frame(rows: list[tuple[str, str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame([(u, t, ts, 1) for u, t, ts in rows], schema=SCHEMA, orient="row")


def tracks_table(track_artists: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame({"track_id": list(track_artists), "artist_id": list(track_artists.values())})


def acarec_with(track_artists: dict[str, str], **options) -> AcaRec:
    """An unfitted AcaRec given each track's artist through its side table (the `tracks` contract)."""
    model = AcaRec(**options)
    model.use_side_tables({"tracks": tracks_table(track_artists)})
    return model


def planted(seed: int = 0) -> tuple[pl.DataFrame, dict[str, str], ItemVectors]:
    """(interactions, track -> artist, noise audio vectors of every track)."""
    rng = np.random.default_rng(seed)
    artists: dict[str, str] = {}
    rows = []
    for g in range(GROUPS):
        group_artists = [f"a{g}{j}" for j in range(ARTISTS_PER_GROUP)]
        known = [f"k{a}_{i}" for a in group_artists for i in range(KNOWN)]
        new = [f"n{a}" for a in group_artists]
        cold = [f"c{g}_{i}" for i in range(2)]
        artists.update({t: t[1:4] for t in known + new})
        artists.update({t: f"x{g}" for t in cold})
        for u in range(USERS):
            user = f"u{g}_{u:02d}"
            for minute, track in enumerate(rng.choice(known, 8, replace=False)):
                rows.append((user, str(track), START + timedelta(days=u * 0.5, minutes=minute)))
            later = new + ([cold[u % 2]] if u % 2 == 0 else [])
            rows += [(user, t, CUTOFF + timedelta(days=1, minutes=m)) for m, t in enumerate(later)]
    ids = sorted(artists)
    return frame(rows), artists, ItemVectors(ids, rng.normal(size=(len(ids), DIM)).astype(np.float32))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    interactions, artists, items = planted()
    split = cold_split(interactions, tracks_table(artists), cutoff=CUTOFF, seed=0)
    model = acarec_with(artists, **FAST).fit(split.train, items,
                                             (histories_from(split.train), relevant_by(split.validation)))
    return interactions, artists, items, split, model


# ---- split labels ---------------------------------------------------------------------------------------------

def test_split_labels_semi_cold_cold_discovery_exploit():
    artists = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}
    day = timedelta(days=1)
    interactions = frame([
        ("u1", "a1", START), ("u1", "a2", START + day), ("u2", "c1", START), ("u3", "a1", START),
        ("u1", "a3", CUTOFF), ("u2", "a3", CUTOFF + day), ("u1", "b1", CUTOFF + day),
        ("u4", "a3", CUTOFF),  # unknown user: dropped
        ("u3", "a2", CUTOFF),  # a known track: not a cold-start pair
    ])
    split = cold_split(interactions, tracks_table(artists), cutoff=CUTOFF, validation_share=0.0)
    assert split.scenario == {"a3": "semi_cold", "b1": "cold"}
    assert split.validation.is_empty() and split.train.height == 4
    labels = {(u, t): (s, n) for u, t, s, n in split.test.select("user_id", "track_id", "scenario", "novelty").rows()}
    assert labels == {("u1", "a3"): ("semi_cold", "exploit"), ("u2", "a3"): ("semi_cold", "discovery"),
                      ("u1", "b1"): ("cold", "discovery")}
    assert relevant_by(split.test, "semi_cold") == {"u1": {"a3"}, "u2": {"a3"}}
    assert relevant_by(split.test, "semi_cold", "discovery") == {"u2": {"a3"}}
    assert relevant_by(split.test, novelty="exploit") == {"u1": {"a3"}}
    assert split.candidates("cold") == ["b1"]
    with pytest.raises(ValueError, match="unknown scenario"):
        relevant_by(split.test, "hot")


def test_holdout_artists_become_cold_and_leave_training(data):
    interactions, artists, _, _, _ = data
    split = cold_split(interactions, tracks_table(artists), cutoff=CUTOFF, holdout_artists=0.25, seed=3)
    withheld = set(split.withheld_artists)
    assert withheld == withheld_artist_ids(list(artists.values()), 0.25, 3) and len(withheld) == 3  # 12 artists
    withheld_tracks = {t for t, a in artists.items() if a in withheld}
    assert not withheld_tracks & set(split.train["track_id"])
    assert all(split.scenario[t] == "cold" for t in withheld_tracks)
    users = set(split.validation["user_id"]) | set(split.test["user_id"])
    assert not users & set(split.validation["user_id"]) & set(split.test["user_id"])
    assert users <= set(split.train["user_id"])


# ---- acarec ---------------------------------------------------------------------------------------------------

def test_artist_catalog_decides_semi_cold_acarec_finds_it_content_does_not(data):
    _, _, items, split, acarec = data
    knn = ItemKNN().fit(split.train, items)
    table = evaluate_cold({"acarec": acarec, "knn": knn}, split, k_list=(2,), metrics=("recall",))
    assert set(table.columns) == {"recommender", "scenario", "novelty", "user_id", "metric", "k", "value"}
    semi = table.filter((pl.col("scenario") == "semi_cold") & (pl.col("novelty") == "all"))
    recall = dict(semi.group_by("recommender").agg(pl.col("value").mean()).rows())
    assert semi.filter(pl.col("recommender") == "acarec").height == len(relevant_by(split.test, "semi_cold"))
    assert recall["acarec"] >= 0.95
    assert recall["knn"] <= 0.6


def test_pool_of_all_new_tracks_ranks_both_scenarios_together(data):
    """knn's scores do not depend on the pool, so adding the other scenario's tracks to the candidates can only
    push relevant tracks down: per user, Recall@2 among all new tracks ≤ among the scenario's tracks."""
    _, _, items, split, _ = data
    knn = {"knn": ItemKNN().fit(split.train, items)}
    keys = ["scenario", "novelty", "user_id"]
    together = evaluate_cold(knn, split, k_list=(2,), metrics=("recall",)).sort(keys)
    apart = evaluate_cold(knn, split, k_list=(2,), metrics=("recall",), pool="scenario").sort(keys)
    assert together.select(keys).equals(apart.select(keys))
    assert (together["value"] <= apart["value"] + 1e-12).all()
    assert together["value"].sum() < apart["value"].sum()
    with pytest.raises(ValueError, match="pool must be"):
        evaluate_cold(knn, split, pool="artist")


def test_new_artist_falls_back_to_content_mapping_with_finite_scores(data):
    _, _, _, split, model = data
    cold = split.candidates("cold")
    rows = torch.tensor([model.item_ids.index(t) for t in cold])
    with torch.no_grad():
        _, has_catalog = model.net.attend(rows)
        expected = model.net.artist_content(rows).numpy()
    assert not has_catalog.any()
    np.testing.assert_allclose(model.predicted_cf(cold), expected, rtol=1e-6)
    histories = histories_from(split.train)
    users = sorted(histories)[:5]
    with torch.no_grad():
        scores = model.score(users, [model.item_rows(histories[u]) for u in users])
    assert torch.isfinite(scores).all()
    rankings = model.recommend({u: histories[u] for u in users}, 3, candidates=cold)
    assert all(len(r) == 3 and set(r) <= set(cold) for r in rankings.values())


def test_new_batch_after_training_is_recommendable_without_retraining(data):
    interactions, artists, items, split, _ = data
    semi = split.candidates("semi_cold")
    old = items.subset([t for t in items.ids if t not in semi])
    model = AcaRec(**FAST)
    model.track_artists = {t: a for t, a in artists.items() if t not in semi}  # set directly instead of a table
    model.fit(split.train, old)
    cf_before = model.net.cf.clone()
    weights_before = {k: v.clone() for k, v in model.net.state_dict().items()
                      if k not in ("audio", "catalog", "artist")}
    with pytest.raises(KeyError, match="unknown to the model"):
        model.recommend({"u0_00": []}, 2, candidates=semi)
    model.add_items(items.subset(semi), {t: artists[t] for t in semi})
    assert torch.equal(model.net.cf, cf_before)
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in weights_before.items())
    histories = histories_from(split.train)
    relevant = relevant_by(pl.concat([split.validation, split.test]), "semi_cold")
    rankings = model.recommend({u: histories[u] for u in relevant}, 2, candidates=semi)
    hits = [len(set(rankings[u]) & relevant[u]) / len(relevant[u]) for u in relevant]
    assert np.mean(hits) >= 0.95


def test_save_load_gives_identical_recommendations(data, tmp_path):
    _, _, _, split, model = data
    folder = model.save(tmp_path / "acarec")
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    loaded = RECOMMENDERS["acarec"].load(folder)
    histories = {u: h for u, h in list(histories_from(split.train).items())[:10]}
    candidates = split.candidates("semi_cold") + split.candidates("cold")
    assert loaded.recommend(histories, 5, candidates) == model.recommend(histories, 5, candidates)
    np.testing.assert_array_equal(loaded.predicted_cf(candidates), model.predicted_cf(candidates))


def test_missing_artist_is_a_clear_error(data):
    _, artists, items, split, _ = data
    partial = {t: a for t, a in artists.items() if not t.startswith("c")}
    with pytest.raises(KeyError, match="no artist for 8 track.*tracks table"):
        acarec_with(partial, **FAST).fit(split.train, items)
    with pytest.raises(KeyError, match="no artist for 64 track"):  # no side table at all
        AcaRec(**FAST).fit(split.train, items)
    with pytest.raises(TypeError, match="unknown option"):  # artists are a side table, not an option
        AcaRec(track_artists=artists, **FAST)
    assert AcaRec.side_tables == ("tracks",) and AcaRec.ranks_new_tracks and AcaRec.early_stops_on_new_tracks


def test_mean_over_runs_averages_each_users_metric_across_seeds():
    def run(values: list[float]) -> pl.DataFrame:
        return pl.DataFrame({"recommender": "acarec", "scenario": "cold", "novelty": "all", "user_id": ["u1", "u2"],
                             "metric": "ndcg", "k": 20, "value": values}, schema_overrides={"k": pl.Int32})

    mean = mean_over_runs([run([0.2, 1.0]), run([0.4, 0.0]), run([0.0, 0.5])]).sort("user_id")
    assert mean.columns == ["recommender", "scenario", "novelty", "user_id", "metric", "k", "value"]
    assert mean["value"].to_list() == pytest.approx([0.2, 0.5])


# ---- the cold-start loop over registered systems and its summary ------------------------------------------------

SYSTEMS = {"knn": (ItemKNN, {}), "acarec": (AcaRec, FAST)}


def test_fit_cold_systems_builds_each_class_with_its_options_seed_and_side_tables(data):
    interactions, artists, items, split, _ = data
    fitted = fit_cold_systems(split, interactions, tracks_table(artists), items,
                              {"knn": (ItemKNN, {"standardize": False}), "acarec": (AcaRec, FAST)}, seed=5)
    assert set(fitted) == {"knn", "acarec"}
    assert isinstance(fitted["knn"], ItemKNN) and fitted["knn"].options.standardize is False
    acarec = fitted["acarec"]
    assert isinstance(acarec, AcaRec) and acarec.options.seed == 5  # the seed option follows the run's seed
    assert {k: getattr(acarec.options, k) for k in FAST} == FAST
    assert acarec.track_artists == artists  # from the tracks side table
    new = split.candidates("semi_cold") + split.candidates("cold")
    histories = histories_from(split.train)
    for model in fitted.values():  # every system knows the new tracks afterwards
        ranked = model.recommend({u: histories[u] for u in list(histories)[:3]}, 3, candidates=new)
        assert all(len(r) == 3 and set(r) <= set(new) for r in ranked.values())


def test_run_cold_experiment_and_summary_against_the_reference(data):
    interactions, artists, items, split, _ = data
    per_user = run_cold_experiment(split, interactions, tracks_table(artists), items, SYSTEMS, k_list=(2,),
                                   seeds=(0, 1), metrics=("recall", "ndcg"))
    assert per_user.columns == ["recommender", "scenario", "novelty", "user_id", "metric", "k", "value"]
    assert set(per_user["recommender"]) == {"knn", "acarec"}
    table = cold_start_summary(per_user.with_columns(pl.lit("noise").alias("backbone")), "acarec", 2, "planted")
    assert {"p_vs_reference", "novelty", "value", "ci_low", "ci_high", "n", "backbone"} <= set(table.columns)
    assert "p_vs_acarec" not in table.columns
    assert set(table["k"]) == {2} and set(table["dataset"]) == {"planted"} and set(table["backbone"]) == {"noise"}
    reference = table.filter(pl.col("recommender") == "acarec")
    assert reference["p_vs_reference"].null_count() == reference.height  # no test against itself
    semi = table.filter((pl.col("scenario") == "semi_cold") & (pl.col("novelty") == "all")
                        & (pl.col("metric") == "recall"))
    value = dict(semi.select("recommender", "value").rows())
    assert value["acarec"] >= 0.95 and value["knn"] <= 0.6
    p = semi.filter(pl.col("recommender") == "knn")["p_vs_reference"].item()
    assert p is not None and 0.0 <= p < 0.05  # the artist's catalog decides: acarec is clearly better
    # the summary's means are those of the per-user table at that cutoff
    mean = per_user.filter((pl.col("recommender") == "knn") & (pl.col("scenario") == "semi_cold")
                           & (pl.col("novelty") == "all") & (pl.col("metric") == "recall"))["value"].mean()
    assert value["knn"] == pytest.approx(mean)
