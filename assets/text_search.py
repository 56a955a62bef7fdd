"""Natural-language search assets: the faiss index behind `musicrec search`, and the retrieval experiment
(TF-IDF vs the bundled all-MiniLM-L6-v2 vs the fine-tuned bi-encoder, over several seeds)."""
import dagster as dg
import polars as pl

from assets.automation import RERUN_WHEN_STALE
from assets.experiment import Experiment
from assets.placement import placement
from assets.resources import StorageResource
from assets.retries import retried_when_transient
from recommenders.text_biencoder import FineTuneSettings
from recommenders.text_retrieval import run_text_retrieval_experiment
from recommenders.text_search import build_search_index


@dg.asset(group_name="text_search", code_version="1", automation_condition=RERUN_WHEN_STALE)
@retried_when_transient
def search_index(tracks: pl.DataFrame, artists: pl.DataFrame, storage: StorageResource) -> dg.MaterializeResult:
    """Descriptor embeddings (tags + caption) of every track in a faiss index at storage/search/, with the
    bundled all-MiniLM-L6-v2: what `musicrec search "<text>"` queries."""
    folder = build_search_index(tracks, None, storage.path("search"), artists)
    return dg.MaterializeResult(metadata={"path": str(folder), "tracks": tracks.height})


class TextRetrievalConfig(dg.Config):
    seeds: list[int] = [0, 1, 2]
    epochs: int = 1
    max_steps: int = 150  # optimiser steps per seed (CPU-sized; raise on a GPU)
    batch_size: int = 32


def build_text_retrieval_asset(experiment: Experiment) -> dg.AssetsDefinition:
    """`text_retrieval_results`, in the `gpu` pool where the experiment uses it."""

    @dg.asset(group_name="text_search", code_version="1", **placement(experiment.uses_gpu_pool()))
    @retried_when_transient
    def text_retrieval_results(config: TextRetrievalConfig, tracks: pl.DataFrame,
                               storage: StorageResource) -> pl.DataFrame:
        """Recall/MRR/NDCG@10 with CIs over seeds for TF-IDF, pretrained and fine-tuned, on caption queries and
        on paraphrased queries (the published protocol: caption sentences as queries, tag subsets as
        documents)."""
        settings = FineTuneSettings(epochs=config.epochs, max_steps=config.max_steps, batch_size=config.batch_size)
        return run_text_retrieval_experiment(tracks, seeds=config.seeds, out_folder=storage.path("text_retrieval"),
                                             epochs=config.epochs, settings=settings)

    return text_retrieval_results
