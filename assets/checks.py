"""Asset checks on every table: row counts, duplicate ids, references, embedding dims, finite values and
id coverage. Blocking checks stop downstream work with a readable message."""
import dagster as dg
import numpy as np
import polars as pl

from assets.experiment import Experiment
from assets.resources import StorageResource
from catalog.schemas import SchemaError, check_references
from embedders.runner import embedding_files, read_backbone, read_backbone_failures, stored_fingerprint

MIN_EMBEDDED_FRACTION = 0.95  # at least this share of catalog tracks must have a vector


def _fail(description: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=description, metadata=metadata)


@dg.asset_check(asset="tracks", blocking=True, description="tracks: at least one row, unique track ids")
def tracks_are_valid(tracks: pl.DataFrame) -> dg.AssetCheckResult:
    if tracks.is_empty():
        return _fail("the catalog has no tracks: check the catalog folder or the ingest failures table")
    duplicates = tracks.filter(pl.col("track_id").is_duplicated())["track_id"].unique().to_list()
    if duplicates:
        return _fail(f"{len(duplicates)} duplicate track ids, e.g. {duplicates[:3]}")
    return dg.AssetCheckResult(passed=True, metadata={"rows": tracks.height})


@dg.asset_check(asset="interactions", blocking=True, additional_ins={"tracks": dg.AssetIn("tracks")},
                description="interactions: unique (user, track), every track known")
def interactions_are_valid(interactions: pl.DataFrame, tracks: pl.DataFrame) -> dg.AssetCheckResult:
    unknown = interactions.join(tracks.select("track_id"), on="track_id", how="anti")
    if unknown.height:
        return _fail(f"{unknown.height} interactions point at unknown tracks, e.g. {unknown['track_id'][:3].to_list()}")
    if interactions.select(pl.struct("user_id", "track_id").is_duplicated().any()).item():
        return _fail("duplicate (user_id, track_id) rows: the contract keeps the first play per pair")
    return dg.AssetCheckResult(passed=True, metadata={"rows": interactions.height,
                                                      "users": interactions["user_id"].n_unique()})


def build_embedding_check(backbone: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=f"embeddings_{backbone}", name="embeddings_are_valid", blocking=True,
                    additional_ins={"tracks": dg.AssetIn("tracks")},
                    description="dims consistent, values finite, unique ids, ids known, coverage of the catalog")
    def check(tracks: pl.DataFrame, storage: StorageResource) -> dg.AssetCheckResult:
        folder = storage.path("embeddings", backbone)
        unreadable = [f.name for f in embedding_files(folder) if stored_fingerprint(f) is None]
        if unreadable:
            return _fail(f"{folder}: unreadable table(s) {unreadable} (corrupt or cut short); the next run "
                         "embeds those batches again")
        vectors = read_backbone(folder)
        if not np.isfinite(vectors.matrix).all():
            return _fail(f"{folder}: embeddings hold NaN or inf values")
        if len(set(vectors.ids)) != len(vectors.ids):
            return _fail(f"{folder}: duplicate track ids in the embedding tables")
        catalog_ids = set(tracks["track_id"].to_list())
        unknown = sorted(set(vectors.ids) - catalog_ids)
        if unknown:
            return _fail(f"{folder}: {len(unknown)} vectors for tracks not in the catalog, e.g. {unknown[:3]}")
        coverage = len(vectors.ids) / max(1, len(catalog_ids))
        failures = read_backbone_failures(folder)
        metadata = {"dim": vectors.dim, "vectors": len(vectors.ids), "coverage": coverage,
                    "failed_tracks": failures.height}
        if coverage < MIN_EMBEDDED_FRACTION:
            return _fail(f"only {coverage:.1%} of catalog tracks have a {backbone} vector "
                         f"(minimum {MIN_EMBEDDED_FRACTION:.0%}); see {folder}/*.failures.parquet", **metadata)
        return dg.AssetCheckResult(passed=True, metadata=metadata)

    return check


def build_artists_check(experiment: Experiment) -> dg.AssetChecksDefinition:
    catalog = experiment.catalog
    # a folder or tables catalog without an `artists` Parquet file legitimately has an empty artists table
    source = getattr(catalog, "artists", None)
    provided = catalog.kind in ("demo", "music4all_onion") or source is not None

    @dg.asset_check(asset="artists", blocking=True, name="artists_are_valid",
                    description="artists: unique artist ids; at least one row when the catalog provides artists")
    def artists_are_valid(artists: pl.DataFrame) -> dg.AssetCheckResult:
        if artists.is_empty() and provided:
            return _fail(f"the artists table is empty (catalog kind {catalog.kind!r}"
                         + (f", file {source})" if source else ")"), rows=0)
        duplicates = artists.filter(pl.col("artist_id").is_duplicated())["artist_id"].unique().sort().to_list()
        if duplicates:
            return _fail(f"artists: {len(duplicates)} duplicate artist ids, e.g. {duplicates[:3]}", rows=artists.height)
        return dg.AssetCheckResult(passed=True, metadata={"rows": artists.height})

    return artists_are_valid


@dg.asset_check(asset="artist_edges", blocking=True, additional_ins={"artists": dg.AssetIn("artists")},
                description="artist_edges: both ends of every edge are known artists, no self-loops")
def artist_edges_are_valid(artist_edges: pl.DataFrame, artists: pl.DataFrame) -> dg.AssetCheckResult:
    known = set(artists["artist_id"].to_list())
    edges = artist_edges.to_arrow()
    try:
        for column in ("src", "dst"):
            check_references(edges, column, known, "artist_edges", "artists")
    except SchemaError as exc:
        return _fail(str(exc), rows=artist_edges.height, artists=len(known))
    loops = artist_edges.filter(pl.col("src") == pl.col("dst"))
    if loops.height:
        return _fail(f"artist_edges: {loops.height} self-loops (src == dst), e.g. {loops['src'][:3].to_list()}",
                     rows=artist_edges.height)
    return dg.AssetCheckResult(passed=True, metadata={
        "rows": artist_edges.height,
        "connected_artists": len(set(artist_edges["src"].to_list()) | set(artist_edges["dst"].to_list()))})


@dg.asset_check(asset="queries", blocking=True,
                description="queries: unique query ids, non-empty text (an empty table passes)")
def queries_are_valid(queries: pl.DataFrame) -> dg.AssetCheckResult:
    duplicates = queries.filter(pl.col("query_id").is_duplicated())["query_id"].unique().sort().to_list()
    if duplicates:
        return _fail(f"queries: {len(duplicates)} duplicate query ids, e.g. {duplicates[:3]}", rows=queries.height)
    blank = queries.filter(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
    if blank.height:
        return _fail(f"queries: {blank.height} queries with empty text, e.g. {blank['query_id'][:3].to_list()}",
                     rows=queries.height)
    return dg.AssetCheckResult(passed=True, metadata={"rows": queries.height})


@dg.asset_check(asset="hot_train", name="hot_split_is_valid", blocking=True,
                additional_ins={"hot_validation": dg.AssetIn("hot_validation"), "hot_test": dg.AssetIn("hot_test")},
                description="hot split: train non-empty and strictly before the later parts; validation/test "
                            "users disjoint, known in train, with no (user, track) pair of train")
def hot_split_is_valid(hot_train: pl.DataFrame, hot_validation: pl.DataFrame,
                       hot_test: pl.DataFrame) -> dg.AssetCheckResult:
    """What evaluation/splits.py::hot_split guarantees: one global time cutoff (train < cutoff <= later
    parts), later parts restricted to train users and tracks minus train pairs, users divided between them."""
    metadata = {"train_rows": hot_train.height, "validation_rows": hot_validation.height,
                "test_rows": hot_test.height}
    if hot_train.is_empty():
        return _fail("hot split: hot_train is empty (too few interactions before the time cutoff)", **metadata)
    train_users = set(hot_train["user_id"].to_list())
    train_tracks = set(hot_train["track_id"].to_list())
    for name, part in (("hot_validation", hot_validation), ("hot_test", hot_test)):
        repeated = part.join(hot_train.select("user_id", "track_id"), on=["user_id", "track_id"], how="semi")
        if repeated.height:
            first = repeated.row(0, named=True)
            return _fail(f"hot split: {repeated.height} (user_id, track_id) pairs of {name} are in hot_train, e.g. "
                         f"({first['user_id']!r}, {first['track_id']!r})", **metadata)
        unknown_users = sorted(set(part["user_id"].to_list()) - train_users)
        unknown_tracks = sorted(set(part["track_id"].to_list()) - train_tracks)
        if unknown_users or unknown_tracks:
            return _fail(f"hot split: {name} has {len(unknown_users)} users and {len(unknown_tracks)} tracks not in "
                         f"hot_train (users {unknown_users[:3]}, tracks {unknown_tracks[:3]})", **metadata)
        if part.height and part["timestamp"].min() <= hot_train["timestamp"].max():
            return _fail(f"hot split: {name} starts at {part['timestamp'].min()}, not after the last hot_train "
                         f"interaction ({hot_train['timestamp'].max()})", **metadata)
    shared = sorted(set(hot_validation["user_id"].to_list()) & set(hot_test["user_id"].to_list()))
    if shared:
        return _fail(f"hot split: {len(shared)} users are in both hot_validation and hot_test, e.g. {shared[:3]}",
                     **metadata)
    return dg.AssetCheckResult(passed=True, metadata={
        **metadata, "validation_users": hot_validation["user_id"].n_unique(),
        "test_users": hot_test["user_id"].n_unique()})


@dg.asset_check(asset="metrics", blocking=True,
                description="metrics: values finite in [0, 1], ci_low <= value <= ci_high where set, n > 0")
def metrics_are_valid(metrics: pl.DataFrame) -> dg.AssetCheckResult:
    if metrics.is_empty():
        return _fail("the metrics table is empty: no system was evaluated", rows=0)
    value, low, high = pl.col("value"), pl.col("ci_low"), pl.col("ci_high")
    problems = {
        "value not finite or outside [0, 1]": ~(value.is_finite() & value.is_between(0.0, 1.0)),
        "ci_low not finite or above value": low.is_not_null() & ~(low.is_finite() & (low <= value)),
        "ci_high not finite or below value": high.is_not_null() & ~(high.is_finite() & (high >= value)),
        "n not positive": ~(pl.col("n") > 0),
    }
    metadata = {"rows": metrics.height,
                "systems": metrics.select("scenario", "recommender", "backbone").n_unique()}
    for problem, is_bad in problems.items():
        bad = metrics.filter(is_bad.fill_null(True))
        if bad.height:
            first = bad.row(0, named=True)
            return _fail(f"metrics: {bad.height} rows with {problem}, e.g. {first['metric']}@{first['k']} of "
                         f"{first['recommender']}/{first['backbone']} ({first['scenario']}): value {first['value']}, "
                         f"CI [{first['ci_low']}, {first['ci_high']}], n {first['n']}", **metadata)
    return dg.AssetCheckResult(passed=True, metadata=metadata)
