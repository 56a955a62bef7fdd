"""The asset checks of assets/checks.py on tiny tables, run through Dagster (`dg.materialize` of stand-in
assets plus the check): one passing and the failing cases of every check, and a failing blocking check that
stops the asset below it."""
from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from assets.checks import (
    artist_edges_are_valid,
    build_artists_check,
    hot_split_is_valid,
    metrics_are_valid,
    queries_are_valid,
)
from assets.experiment import parse_experiment
from catalog.schemas import METRICS, SPECS

T0 = datetime(2024, 1, 1)


def artists_check(catalog: dict) -> dg.AssetChecksDefinition:
    """The artists check of an experiment whose catalog is `catalog` (the experiment file's `catalog` key)."""
    experiment = parse_experiment({"name": "t", "storage": "/x/storage", "catalog": catalog})
    return build_artists_check(experiment)


DEMO_CATALOG = {"kind": "demo", "size": "tiny"}
artists_are_valid = artists_check(DEMO_CATALOG)


def table(kind: str, rows: list[tuple]) -> pl.DataFrame:
    """A contract table `kind` (catalog/schemas.py) holding `rows`."""
    return pl.DataFrame(rows, schema=pl.from_arrow(SPECS[kind].schema.empty_table()).schema, orient="row")


def table_asset(name: str, value: pl.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name)
    def stand_in() -> pl.DataFrame:
        return value

    return stand_in


def evaluate(check: dg.AssetChecksDefinition, **tables: pl.DataFrame) -> dg.AssetCheckEvaluation:
    """Materialise `tables` as assets of those names, run `check` on them and return its evaluation."""
    result = dg.materialize([*(table_asset(n, t) for n, t in tables.items()), check], raise_on_error=False,
                            resources={"io_manager": dg.mem_io_manager})
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def assert_fails(evaluation: dg.AssetCheckEvaluation, *phrases: str) -> None:
    assert not evaluation.passed
    for phrase in phrases:
        assert phrase in evaluation.description, evaluation.description


# ------------------------------------------------------------------------------------------------ artists

ARTISTS = table("artists", [("a1", "Ann"), ("a2", "Bob"), ("a3", "Cid")])


def test_artists_pass():
    evaluation = evaluate(artists_are_valid, artists=ARTISTS)
    assert evaluation.passed and evaluation.metadata["rows"].value == 3


def test_artists_duplicate_id_fails():
    duplicated = table("artists", [("a1", "Ann"), ("a2", "Bob"), ("a1", "Ann again")])
    assert_fails(evaluate(artists_are_valid, artists=duplicated), "artists", "1 duplicate artist ids", "a1")


def test_artists_empty_fails_when_the_catalog_provides_artists():
    assert_fails(evaluate(artists_are_valid, artists=table("artists", [])), "artists table is empty", "'demo'")
    with_file = artists_check({"kind": "folder", "folder": "/x", "artists": "/x/artists.parquet"})
    assert_fails(evaluate(with_file, artists=table("artists", [])), "/x/artists.parquet")


def test_artists_empty_passes_for_a_folder_catalog_without_artists():
    folder = artists_check({"kind": "folder", "folder": "/x"})
    assert evaluate(folder, artists=table("artists", [])).passed


# ------------------------------------------------------------------------------------------- artist_edges

def test_artist_edges_pass():
    edges = table("artist_edges", [("a1", "a2"), ("a2", "a3")])
    evaluation = evaluate(artist_edges_are_valid, artist_edges=edges, artists=ARTISTS)
    assert evaluation.passed and evaluation.metadata["rows"].value == 2


@pytest.mark.parametrize("edges, phrases", [
    ([("a1", "a2"), ("a2", "zz")], ("artist_edges", "column 'dst'", "unknown artists", "'zz'")),
    ([("yy", "a2")], ("artist_edges", "column 'src'", "'yy'")),
    ([("a1", "a2"), ("a3", "a3")], ("artist_edges", "1 self-loops", "a3")),
])
def test_artist_edges_fail(edges, phrases):
    evaluation = evaluate(artist_edges_are_valid, artist_edges=table("artist_edges", edges), artists=ARTISTS)
    assert_fails(evaluation, *phrases)


# ------------------------------------------------------------------------------------------------ queries

@pytest.mark.parametrize("rows", [[("q0", "calm piano", ["t1"]), ("q1", "fast drums", [])], []])
def test_queries_pass_including_an_empty_table(rows):
    assert evaluate(queries_are_valid, queries=table("queries", rows)).passed


@pytest.mark.parametrize("rows, phrases", [
    ([("q0", "calm piano", ["t1"]), ("q0", "fast drums", ["t2"])], ("queries", "1 duplicate query ids", "q0")),
    ([("q0", "calm piano", ["t1"]), ("q1", "  ", ["t2"])], ("queries", "1 queries with empty text", "q1")),
])
def test_queries_fail(rows, phrases):
    assert_fails(evaluate(queries_are_valid, queries=table("queries", rows)), *phrases)


# -------------------------------------------------------------------------------------------- hot split

def plays(*rows: tuple[str, str, int]) -> pl.DataFrame:
    """interactions rows (user, track, day offset from T0)."""
    return table("interactions", [(u, t, T0 + timedelta(days=d), 1) for u, t, d in rows])


TRAIN = plays(("u1", "t1", 0), ("u1", "t2", 1), ("u2", "t1", 2), ("u2", "t3", 3), ("u3", "t2", 4))
VALIDATION = plays(("u1", "t3", 10))
TEST = plays(("u2", "t2", 10), ("u3", "t1", 11))


def test_hot_split_pass():
    evaluation = evaluate(hot_split_is_valid, hot_train=TRAIN, hot_validation=VALIDATION, hot_test=TEST)
    assert evaluation.passed
    assert evaluation.metadata["train_rows"].value == 5 and evaluation.metadata["test_users"].value == 2


@pytest.mark.parametrize("train, validation, test, phrases", [
    (TRAIN.clear(), VALIDATION, TEST, ("hot_train is empty",)),
    (TRAIN, VALIDATION, plays(("u2", "t2", 10), ("u3", "t2", 11)),
     ("1 (user_id, track_id) pairs of hot_test are in hot_train", "'u3'", "'t2'")),
    (TRAIN, plays(("u1", "t3", 10), ("u2", "t2", 10)), TEST, ("in both hot_validation and hot_test", "u2")),
    (TRAIN, plays(("u9", "t1", 10)), TEST, ("hot_validation has 1 users and 0 tracks not in hot_train", "u9")),
    (TRAIN, VALIDATION, plays(("u2", "t2", 10), ("u3", "t1", 3)), ("hot_test starts at", "not after the last")),
])
def test_hot_split_fail(train, validation, test, phrases):
    evaluation = evaluate(hot_split_is_valid, hot_train=train, hot_validation=validation, hot_test=test)
    assert_fails(evaluation, "hot split", *phrases)


# ------------------------------------------------------------------------------------------------ metrics

def metrics_table(*overrides: dict) -> pl.DataFrame:
    base = {"experiment": "e", "dataset": "demo", "backbone": "random", "recommender": "knn", "scenario": "hot",
            "metric": "ndcg", "k": 50, "value": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 20}
    return pl.DataFrame([{**base, **o} for o in overrides], schema=pl.from_arrow(METRICS.empty_table()).schema)


def test_metrics_pass():
    good = metrics_table({}, {"metric": "recall", "value": 0.0, "ci_low": -0.01, "ci_high": 0.01},
                         {"metric": "hit_rate", "value": 1.0, "ci_low": None, "ci_high": None, "n": 1})
    evaluation = evaluate(metrics_are_valid, metrics=good)
    assert evaluation.passed and evaluation.metadata["rows"].value == 3


@pytest.mark.parametrize("bad, phrase", [
    ({"value": 1.5, "ci_high": 1.6}, "value not finite or outside [0, 1]"),
    ({"value": float("nan")}, "value not finite or outside [0, 1]"),
    ({"ci_low": 0.25}, "ci_low not finite or above value"),
    ({"ci_high": float("inf")}, "ci_high not finite or below value"),
    ({"ci_high": 0.15}, "ci_high not finite or below value"),
    ({"n": 0}, "n not positive"),
])
def test_metrics_fail(bad, phrase):
    evaluation = evaluate(metrics_are_valid, metrics=metrics_table({}, {"metric": "mrr", **bad}))
    assert_fails(evaluation, "metrics: 1 rows with", phrase, "mrr@50 of knn/random (hot)")


def test_metrics_empty_fails():
    assert_fails(evaluate(metrics_are_valid, metrics=metrics_table().clear()), "metrics table is empty")


# ----------------------------------------------------------------------------------------------- blocking

def test_failing_blocking_check_stops_downstream_assets():
    @dg.asset
    def artist_count(artists: pl.DataFrame) -> int:
        return artists.height

    duplicated = table("artists", [("a1", "Ann"), ("a1", "Ann again")])
    result = dg.materialize([table_asset("artists", duplicated), artists_are_valid, artist_count],
                            raise_on_error=False, resources={"io_manager": dg.mem_io_manager})
    assert not result.success
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == {dg.AssetKey("artists")}  # artist_count never ran
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and "1 duplicate artist ids" in evaluation.description
    failures = [event for event in result.all_events if event.is_step_failure]
    assert any("artists_are_valid" in event.event_specific_data.error.message for event in failures)
