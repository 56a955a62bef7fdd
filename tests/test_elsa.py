"""ELSA, the pure-CF baseline: it learns the planted taste clusters from plays alone (no vectors), beats
popularity, matches EASE's ranking quality on this data, and round-trips through save/load."""
from __future__ import annotations

import pytest
from test_recommenders_hot import RANDOM_RECALL, planted, recall_at_10

from catalog.histories import histories_from
from recommenders.base import RECOMMENDERS

FAST = {"dim": 16, "lr": 0.05, "batch_size": 16, "max_epochs": 40, "patience": 5}


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def elsa(data):
    train, _, validation, _ = data
    return RECOMMENDERS["elsa"](**FAST).fit(train, None, validation)


def test_learns_the_planted_clusters_from_plays_alone(data, elsa):
    train, _, _, test = data
    recall = recall_at_10(elsa, train, test)
    assert recall > 0.5 > 3 * RANDOM_RECALL, recall
    popularity = recall_at_10(RECOMMENDERS["popularity"]().fit(train), train, test)
    assert recall > popularity + 0.2


def test_close_to_ease_on_the_same_plays(data, elsa):
    train, _, _, test = data
    ease = recall_at_10(RECOMMENDERS["ease"](l2=10.0).fit(train), train, test)
    assert recall_at_10(elsa, train, test) >= ease - 0.1


def test_untrained_twin_is_no_better_than_random(data):
    train, _, _, test = data
    untrained = RECOMMENDERS["elsa"](**{**FAST, "max_epochs": 1, "lr": 1e-9}).fit(train)
    assert recall_at_10(untrained, train, test) < 2 * RANDOM_RECALL


def test_round_trip_keeps_rankings_and_options(data, elsa, tmp_path):
    train, _, _, test = data
    loaded = RECOMMENDERS["elsa"].load(elsa.save(tmp_path / "elsa"))
    assert loaded.options == elsa.options and loaded.item_ids == elsa.item_ids
    histories = dict(list(histories_from(train).items())[:8])
    assert loaded.recommend(histories, 10) == elsa.recommend(histories, 10)
