"""Hot-start assets: the time split, one model per (recommender, backbone table), and its per-user test
metrics. Every fact about a recommender (version, options, GPU need, side tables) comes from its class and the
experiment file, so a new recommender needs no change here."""

import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.experiment import NO_BACKBONE, Experiment
from assets.placement import placement
from assets.resources import StorageResource
from assets.retries import retried_when_transient
from catalog.histories import histories_from
from catalog.io import atomic_path
from catalog.registry import code_version
from embedders.runner import read_backbone
from evaluation.metrics import per_user_metrics
from evaluation.splits import hot_split, relevant_sets
from recommenders.base import FIT_FINGERPRINT_FILE, fit_fingerprint, stored_fit_fingerprint

SPLIT_CODE_VERSION = "2"
EVALUATION_CODE_VERSION = "2"


def build_hot_split_asset(experiment: Experiment) -> dg.AssetsDefinition:
    arguments = experiment.split.arguments()

    @dg.multi_asset(
        outs={f"hot_{part}": dg.AssetOut(group_name="hot_start", automation_condition=RERUN_WHEN_STALE,
                                         code_version=f"{SPLIT_CODE_VERSION}:{sorted(arguments.items())}",
                                         description=f"The {part} part of the time-based hot split.")
              for part in ("train", "validation", "test")},
        can_subset=False,
        name="hot_split_tables",
    )
    @retried_when_transient
    def hot_split_tables(context: dg.AssetExecutionContext, interactions: pl.DataFrame):
        """Train before the cutoff (experiment file `split`); later plays of known users on known tracks,
        users divided at random (seeded) into validation and test."""
        split = hot_split(interactions, **arguments)
        context.log.info(f"hot split at {split.cutoff}: train {split.train.height}, validation "
                         f"{split.validation.height}, test {split.test.height} interactions")
        for part, table in (("train", split.train), ("validation", split.validation), ("test", split.test)):
            yield dg.Output(table, output_name=f"hot_{part}", metadata={"rows": table.height,
                                                                        "users": table["user_id"].n_unique()})

    return hot_split_tables


def model_key(recommender: str, backbone: str) -> str:
    return f"model_{recommender}__{backbone}"


def build_model_asset(experiment: Experiment, recommender: str, backbone: str) -> dg.AssetsDefinition:
    """`model_<recommender>__<backbone>`: the recommender of experiment key `recommender` (or `baselines`)
    trained on the hot split over the vectors of backbone table `backbone` ("none" for a baseline)."""
    model_class = experiment.recommender_class(recommender)
    options = experiment.recommender_options(recommender)
    side_inputs = {name: dg.AssetIn(name) for name in model_class.side_tables}

    @dg.asset(
        name=model_key(recommender, backbone),
        group_name="hot_start",
        code_version=code_version(model_class, options),
        automation_condition=RERUN_WHEN_STALE,
        deps=[f"embeddings_{backbone}"] if backbone != NO_BACKBONE else [],
        ins=side_inputs,
        **placement(model_class.needs_gpu and experiment.uses_gpu_pool()),
        description=f"`{recommender}` ({model_class.name} v{model_class.version}) trained on the hot split over "
                    f"`{backbone}` item vectors (models/{recommender}__{backbone}/).",
    )
    @retried_when_transient
    def model(
        context: dg.AssetExecutionContext, hot_train: pl.DataFrame, hot_validation: pl.DataFrame,
        storage: StorageResource, **side_tables: pl.DataFrame,
    ) -> dg.MaterializeResult:
        items = read_backbone(storage.path("embeddings", backbone)) if backbone != NO_BACKBONE else None
        folder = storage.path("models", f"{recommender}__{backbone}")
        fitted = model_class(**options)
        fitted.use_side_tables(side_tables)
        fingerprint = fit_fingerprint(fitted, hot_train, hot_validation, items, side_tables)
        if stored_fit_fingerprint(folder) == fingerprint:
            context.log.info(f"{recommender}__{backbone}: training inputs unchanged since the saved model "
                             f"(new tracks without plays do not change this fit): reusing {folder}")
            return dg.MaterializeResult(metadata={"path": str(folder), "train_rows": hot_train.height, "refit": False})
        validation = (histories_from(hot_train), relevant_sets(hot_validation))
        fitted.fit(hot_train, items, validation=validation)
        fitted.save(folder)
        with atomic_path(folder / FIT_FINGERPRINT_FILE) as tmp:  # written last: a cut-off save is refit next time
            tmp.write_text(fingerprint)
        return dg.MaterializeResult(metadata={"path": str(folder), "train_rows": hot_train.height, "refit": True})

    return model


def build_evaluation_asset(experiment: Experiment, recommender: str, backbone: str) -> dg.AssetsDefinition:
    model_class = experiment.recommender_class(recommender)
    ks = experiment.metrics.ks

    @dg.asset(
        name=f"eval_{recommender}__{backbone}",
        group_name="hot_start",
        code_version=f"{EVALUATION_CODE_VERSION}:{list(ks)}",
        automation_condition=RERUN_WHEN_STALE,
        deps=[model_key(recommender, backbone)],
        description=f"Per-user test metrics of `{recommender}` on `{backbone}` (hot scenario).",
    )
    @retried_when_transient
    def evaluation(hot_train: pl.DataFrame, hot_test: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        model = model_class.load(storage.path("models", f"{recommender}__{backbone}"))
        relevant = relevant_sets(hot_test)
        histories = histories_from(hot_train)
        rankings = model.recommend({u: histories[u] for u in relevant}, k=max(ks))
        return per_user_metrics(rankings, relevant, ks).with_columns(
            pl.lit(backbone).alias("backbone"), pl.lit(recommender).alias("recommender"),
            pl.lit("hot").alias("scenario"),
        )

    return evaluation
