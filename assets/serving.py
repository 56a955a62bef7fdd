"""Serving assets: the tables a platform reads, from the system the experiment file's `serve` names.

- `serving_recommendations`: each user's top k of the served recommender (the model evaluated in the hot
  study), ranked from the user's whole listening history.
- `serving_similar_tracks`: each catalog track's k most similar tracks by cosine over a content backbone
  table, new tracks included. Incremental: when only new tracks arrived (the vectors of known tracks are
  unchanged), the new tracks get full lists and the known tracks' lists are merged with their similarity to
  the new ones, instead of recomputing every row.
- `serving_similar_artists` (when the experiment runs the artist study): each artist's k most similar
  artists from a GraphSAGE model trained on the whole artist graph, with the node features and the layer count
  that scored best in the study (`recommenders.similar_artists`).
- `serving_release`: publishes them, the catalog's track information, the histories and the vectors as one
  immutable release and switches `serving/CURRENT` to it (`serving.snapshot`), which `musicrec serve` picks up
  without a restart.
"""

import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.catalog import audio_root
from assets.experiment import Experiment
from assets.hot_start import model_key
from assets.resources import StorageResource
from assets.retries import retried_when_transient
from catalog.histories import histories_from
from catalog.io import ItemVectors
from catalog.olga import artist_features_from_tracks, random_features
from embedders.runner import read_backbone
from recommenders.index import VectorIndex, nearest
from recommenders.similar_artists import best_layers, serving_graph, similar_artists
from serving.snapshot import publish_release

SERVING_CODE_VERSION = "1"
RECOMMEND_BATCH = 2048  # users ranked per call (bounds the score matrix of score-based models)
SIMILAR_COLUMNS = {"track_id": pl.String, "rank": pl.Int32, "similar_id": pl.String, "score": pl.Float32}


def ranked_table(lists: dict[str, list[tuple[str, float]]], key: str, item: str) -> pl.DataFrame:
    """Long table (key, rank from 1, item, score) of ranked lists."""
    rows = [(owner, rank, other, score) for owner, pairs in lists.items()
            for rank, (other, score) in enumerate(pairs, start=1)]
    schema = {key: pl.String, "rank": pl.Int32, item: pl.String, "score": pl.Float32}
    return pl.DataFrame(rows, schema=schema, orient="row")


def nearest_tracks(queries: ItemVectors, pool: ItemVectors, k: int) -> dict[str, list[tuple[str, float]]]:
    """Each query track's `k` nearest tracks of `pool` by cosine, itself excluded."""
    if not pool.ids:
        return {track: [] for track in queries.ids}
    return nearest(queries.ids, queries.matrix, VectorIndex(pool.ids, pool.matrix, normalize=True), k)


def merge_similar(previous: pl.DataFrame, vectors: ItemVectors, k: int) -> pl.DataFrame | None:
    """Similar-track lists updated for new tracks only, or None when a full recompute is needed (a known
    track's vector changed or disappeared, or `k` grew)."""
    known = previous["track_id"].unique().to_list()
    position = vectors.index_of()
    if not known or any(t not in position for t in known) or previous["rank"].max() < min(k, len(known) - 1):
        return None
    known_set = set(known)
    new = [t for t in vectors.ids if t not in known_set]
    if not new:
        return previous
    fresh = vectors.subset(new)
    lists = nearest_tracks(fresh, vectors, k)  # the new tracks against everything
    merged = previous.filter(pl.col("rank") <= k)
    against_new = nearest_tracks(vectors.subset(known), fresh, k)
    extra = ranked_table(against_new, "track_id", "similar_id").drop("rank")
    combined = (pl.concat([merged.drop("rank"), extra]).sort(["track_id", "score"], descending=[False, True])
                .group_by("track_id", maintain_order=True).head(k)
                .with_columns((pl.col("track_id").cum_count().over("track_id")).cast(pl.Int32).alias("rank")))
    return pl.concat([combined.select(list(SIMILAR_COLUMNS)), ranked_table(lists, "track_id", "similar_id")]
                     ).cast(SIMILAR_COLUMNS).sort(["track_id", "rank"])


def build_serving_assets(experiment: Experiment) -> list[dg.AssetsDefinition]:
    recommender, backbone = experiment.served_system()
    similar = experiment.similar_table()
    k = experiment.serve.k
    model_class = experiment.recommender_class(recommender)
    system = f"{recommender}__{backbone}"

    @dg.asset(group_name="serving", code_version=f"{SERVING_CODE_VERSION}:{system}:{k}",
              automation_condition=RERUN_WHEN_STALE, deps=[model_key(recommender, backbone)])
    @retried_when_transient
    def serving_recommendations(context: dg.AssetExecutionContext, interactions: pl.DataFrame,
                                storage: StorageResource) -> pl.DataFrame:
        """Every user's top k of the served system (user_id, rank, track_id, score), ranked from all their plays."""
        model = model_class.load(storage.path("models", system))
        histories = histories_from(interactions)
        users = sorted(histories)
        lists: dict[str, list[tuple[str, float]]] = {}
        for start in range(0, len(users), RECOMMEND_BATCH):
            batch = users[start:start + RECOMMEND_BATCH]
            lists.update(model.recommend_scored({u: histories[u] for u in batch}, k))
            context.log.info(f"serving: ranked {min(start + RECOMMEND_BATCH, len(users))}/{len(users)} users")
        return ranked_table(lists, "user_id", "track_id")

    assets = [serving_recommendations]
    if similar is not None:
        @dg.asset(group_name="serving", code_version=f"{SERVING_CODE_VERSION}:{similar}:{k}",
                  automation_condition=RERUN_WHEN_STALE, deps=[f"embeddings_{similar}"])
        @retried_when_transient
        def serving_similar_tracks(context: dg.AssetExecutionContext, storage: StorageResource) -> pl.DataFrame:
            """Each track's k most similar tracks by cosine over backbone table `similar` (track_id, rank,
            similar_id, score); only new tracks are computed in full when the known ones are unchanged."""
            vectors = read_backbone(storage.path("embeddings", similar))
            stored = storage.path("tables", "serving_similar_tracks.parquet")
            previous = pl.read_parquet(stored) if stored.exists() else None
            merged = merge_similar(previous, vectors, k) if previous is not None else None
            if merged is not None:
                context.log.info(f"serving: similar tracks updated incrementally ({len(vectors.ids)} tracks)")
                return merged
            context.log.info(f"serving: similar tracks of all {len(vectors.ids)} tracks")
            return ranked_table(nearest_tracks(vectors, vectors, k), "track_id", "similar_id")

        assets.append(serving_similar_tracks)

    if experiment.runs("artist_similarity"):
        features = similar if similar is not None and similar != "random" else "random"

        @dg.asset(group_name="serving", code_version=f"{SERVING_CODE_VERSION}:{features}:{k}",
                  automation_condition=RERUN_WHEN_STALE,
                  deps=[f"embeddings_{features}"] if features != "random" else [])
        @retried_when_transient
        def serving_similar_artists(context: dg.AssetExecutionContext, artists: pl.DataFrame,
                                    artist_edges: pl.DataFrame, tracks: pl.DataFrame,
                                    artist_similarity_demo: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
            """Each artist's k most similar artists (artist_id, rank, similar_id, score: cosine of GraphSAGE
            embeddings), node features from backbone table `features` pooled per artist."""
            graph = serving_graph(artists, artist_edges)
            if features == "random":
                matrix = random_features(graph.num_nodes)
            else:
                matrix, _ = artist_features_from_tracks(graph.artist_ids, tracks,
                                                        read_backbone(storage.path("embeddings", features)))
            layers = best_layers(artist_similarity_demo, features)
            context.log.info(f"serving: similar artists of {graph.num_nodes} artists, GraphSAGE with {layers} "
                             f"layer(s) on {features} features")
            return ranked_table(similar_artists(graph, matrix, layers, k), "artist_id", "similar_id")

        assets.append(serving_similar_artists)

    similar_ins = {name: dg.AssetIn(name) for name in ("serving_similar_tracks", "serving_similar_artists")
                   if any(a.key.to_user_string() == name for a in assets)}
    search_deps = ["search_index"] if experiment.runs("text_search") else []
    similar_backbone = None if similar is None else {"name": experiment.backbone_class(similar).name,
                                                     "module": experiment.backbone_class(similar).__module__,
                                                     "options": experiment.backbone_options(similar)}

    @dg.asset(group_name="serving", code_version=SERVING_CODE_VERSION, automation_condition=RERUN_WHEN_STALE,
              ins=similar_ins, deps=search_deps)
    @retried_when_transient
    def serving_release(serving_recommendations: pl.DataFrame, tracks: pl.DataFrame, artists: pl.DataFrame,
                        interactions: pl.DataFrame, storage: StorageResource,
                        **similar_lists: pl.DataFrame) -> dg.MaterializeResult:
        """Publish the serving tables as a new release and make it the live one (serving/CURRENT)."""
        names = dict(zip(artists["artist_id"].to_list(), artists["name"].to_list()))
        track_info = tracks.select("track_id", "title", "artist_id", "audio_path", "tags").with_columns(
            pl.col("artist_id").replace_strict(names, default=pl.col("artist_id")).alias("artist"))
        no_tracks = pl.DataFrame(schema=SIMILAR_COLUMNS)
        no_artists = no_tracks.rename({"track_id": "artist_id"})
        tables = {"recommendations": serving_recommendations,
                  "similar_tracks": similar_lists.get("serving_similar_tracks", no_tracks), "tracks": track_info,
                  "histories": interactions.select("user_id", "track_id", "timestamp"),
                  "similar_artists": similar_lists.get("serving_similar_artists", no_artists),
                  "artists": artists.select("artist_id", "name")}
        vectors = read_backbone(storage.path("embeddings", similar)) if similar is not None else None
        root = audio_root(experiment.catalog, storage)
        search = storage.path("search")
        folder = publish_release(storage.root, tables, vectors, {
            "experiment": experiment.name, "recommender": recommender, "backbone": backbone, "k": k,
            "similar": similar, "similar_backbone": similar_backbone,
            "audio_root": str(root.resolve()) if root is not None else None},
            search_index=search if search_deps and (search / "index.faiss").exists() else None)
        return dg.MaterializeResult(metadata={"release": folder.name, "path": str(folder),
                                              "users": serving_recommendations["user_id"].n_unique(),
                                              "tracks": track_info.height})

    return [*assets, serving_release]

