"""Hot-start assets: the time split, one model per (recommender, backbone), and its per-user test metrics."""

import json

import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.placement import GPU_RECOMMENDERS, placement
from assets.experiment import REPORT_KS
from embedders.runner import read_backbone
from evaluation.metrics import per_user_metrics
from evaluation.splits import hot_split, relevant_sets
from pipelines.resources import StorageResource
from catalog.io import atomic_path
from recommenders.base import FIT_FINGERPRINT_FILE, RECOMMENDERS, fit_fingerprint, histories_from, stored_fit_fingerprint
import recommenders.registry  # noqa: F401  (registers every model)

SPLIT_CODE_VERSION = "1"


@dg.multi_asset(
    outs={f"hot_{part}": dg.AssetOut(group_name="hot_start", code_version=SPLIT_CODE_VERSION,
                                     automation_condition=RERUN_WHEN_STALE,
                                     description=f"The {part} part of the time-based hot split.")
          for part in ("train", "validation", "test")},
    can_subset=False,
)
def hot_split_tables(context: dg.AssetExecutionContext, interactions: pl.DataFrame):
    """Train before the 80% time quantile; later plays of known users on known tracks, users halved into
    validation and test (seeded)."""
    split = hot_split(interactions, test_fraction=0.2, seed=0)
    context.log.info(f"hot split at {split.cutoff}: train {split.train.height}, validation "
                     f"{split.validation.height}, test {split.test.height} interactions")
    for part, table in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        yield dg.Output(table, output_name=f"hot_{part}", metadata={"rows": table.height,
                                                                    "users": table["user_id"].n_unique()})




def model_key(recommender: str, backbone: str) -> str:
    return f"model_{recommender}__{backbone}"


def content_free(recommender: str) -> bool:
    """Pure collaborative baselines (popularity, EASE) use no embeddings; their backbone label is "none"."""
    return not RECOMMENDERS[recommender].uses_content


def build_model_asset(recommender: str, backbone: str, options: dict | None = None) -> dg.AssetsDefinition:
    model_class = RECOMMENDERS[recommender]
    uses_content = not content_free(recommender)

    options_tag = json.dumps(options or {}, sort_keys=True)
    code_version = f"1:{options_tag}"

    @dg.asset(
        name=model_key(recommender, backbone),
        group_name="hot_start",
        code_version=code_version,
        automation_condition=RERUN_WHEN_STALE,
        deps=[f"embeddings_{backbone}"] if uses_content else [],
        **placement(recommender in GPU_RECOMMENDERS),
        description=f"`{recommender}` trained on the hot split over `{backbone}` item vectors "
                    f"(storage/models/{recommender}__{backbone}/).",
    )
    def model(
        context: dg.AssetExecutionContext, hot_train: pl.DataFrame, hot_validation: pl.DataFrame,
        storage: StorageResource,
    ) -> dg.MaterializeResult:
        items = read_backbone(storage.path("embeddings", backbone)) if uses_content else None
        folder = storage.path("models", f"{recommender}__{backbone}")
        fingerprint = fit_fingerprint(model_class, code_version, hot_train, hot_validation, items)
        if stored_fit_fingerprint(folder) == fingerprint:
            context.log.info(f"{recommender}__{backbone}: training inputs unchanged since the saved model "
                             f"(new tracks without plays do not change this fit): reusing {folder}")
            return dg.MaterializeResult(metadata={"path": str(folder), "train_rows": hot_train.height, "refit": False})
        validation = (histories_from(hot_train), relevant_sets(hot_validation))
        fitted = model_class(**(options or {})).fit(hot_train, items, validation=validation)
        fitted.save(folder)
        with atomic_path(folder / FIT_FINGERPRINT_FILE) as tmp:  # written last: a cut-off save is refit next time
            tmp.write_text(fingerprint)
        return dg.MaterializeResult(metadata={"path": str(folder), "train_rows": hot_train.height, "refit": True})

    return model


def build_evaluation_asset(recommender: str, backbone: str) -> dg.AssetsDefinition:
    model_class = RECOMMENDERS[recommender]

    @dg.asset(
        name=f"eval_{recommender}__{backbone}",
        group_name="hot_start",
        code_version="1",
        automation_condition=RERUN_WHEN_STALE,
        deps=[model_key(recommender, backbone)],
        description=f"Per-user test metrics of `{recommender}` on `{backbone}` (hot scenario).",
    )
    def evaluation(hot_train: pl.DataFrame, hot_test: pl.DataFrame, storage: StorageResource) -> pl.DataFrame:
        model = model_class.load(storage.path("models", f"{recommender}__{backbone}"))
        relevant = relevant_sets(hot_test)
        histories = histories_from(hot_train)
        rankings = model.recommend({u: histories[u] for u in relevant}, k=max(REPORT_KS))
        return per_user_metrics(rankings, relevant, REPORT_KS).with_columns(
            pl.lit(backbone).alias("backbone"), pl.lit(recommender).alias("recommender"),
            pl.lit("hot").alias("scenario"),
        )

    return evaluation
