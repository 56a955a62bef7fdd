"""The text-retrieval experiment (the published protocol of natural-language music retrieval): TF-IDF, the
pretrained bi-encoder and the fine-tuned one, on caption and paraphrased test queries, over several seeds.
Data sets, metrics and the summary over seeds come from `evaluation.text_retrieval`."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl

from catalog.io import write_parquet
from evaluation.text_retrieval import (
    SYSTEMS,
    RetrievalDataset,
    TextRetriever,
    build_retrieval_dataset,
    evaluate_retriever,
    summarise_over_seeds,
)
from recommenders.text_biencoder import FineTuneSettings, TextBiEncoder, TfidfRetriever, mine_hard_negatives

log = logging.getLogger("musicrec.text")


def fine_tune_for_seed(
    dataset: RetrievalDataset,
    base_model: Path | None,
    settings: FineTuneSettings,
    out_folder: Path | None,
    k: int = 10,
) -> TextBiEncoder:
    """Fine-tune the base model on the seed's training queries with hard negatives mined by the base model
    from the training corpus; keep the epoch with the best validation Recall@k; save to `out_folder`."""
    encoder = TextBiEncoder.load(base_model)
    triplets = mine_hard_negatives(encoder, dataset.train.pairs(), dataset.train.documents["text"].to_list(),
                                   seed=dataset.seed)

    def validation_recall(model: TextBiEncoder) -> float:
        table = evaluate_retriever(model, dataset.validation, ks=(k,), metrics=("recall",))
        return float(table["value"].mean())

    encoder.fine_tune(triplets, settings, evaluate=validation_recall)
    if out_folder is not None:
        encoder.save(out_folder)
    return encoder


def run_text_retrieval_experiment(
    tracks: pl.DataFrame,
    seeds: Sequence[int] = (0, 1, 2),
    out_folder: str | Path | None = None,
    epochs: int = 2,
    settings: FineTuneSettings | None = None,
    base_model: str | Path | None = None,
    ks: Sequence[int] = (10,),
    systems: Sequence[str] = SYSTEMS,
) -> pl.DataFrame:
    """TF-IDF, the pretrained bi-encoder and the fine-tuned one on caption and paraphrased test queries.

    Per seed: build the data set, evaluate each system on the test split, take the mean over queries. Returns
    one row per system × query_set × metric × k: mean over seeds, 95% t-interval (ci_low, ci_high; NaN with
    one seed), n_seeds. With `out_folder`, writes `text_retrieval_per_seed.parquet`, `text_retrieval.parquet`
    and the fine-tuned models (`seed<N>/model`). `settings` overrides the fine-tuning defaults (`epochs`,
    at most 200 steps, seeded by the data set's seed).
    """
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown system(s) {sorted(unknown)}; known: {list(SYSTEMS)}")
    out = Path(out_folder) if out_folder is not None else None
    base = Path(base_model) if base_model is not None else None
    settings = settings or FineTuneSettings(epochs=epochs, max_steps=200)
    pretrained = TextBiEncoder.load(base) if "pretrained" in systems else None
    per_seed = []
    for seed in seeds:
        dataset = build_retrieval_dataset(tracks, seed)
        log.info("seed %d: %d/%d/%d train/validation/test queries, %d test documents", seed,
                 dataset.train.queries.height, dataset.validation.queries.height, dataset.test.queries.height,
                 dataset.test.documents.height)
        retrievers: dict[str, TextRetriever] = {}
        if "tfidf" in systems:
            retrievers["tfidf"] = TfidfRetriever()
        if pretrained is not None:
            retrievers["pretrained"] = pretrained
        if "finetuned" in systems:
            seed_settings = replace(settings, seed=seed)
            model_folder = out / f"seed{seed}" / "model" if out is not None else None
            retrievers["finetuned"] = fine_tune_for_seed(dataset, base, seed_settings, model_folder)
        for system, retriever in retrievers.items():
            for query_set, split in (("caption", dataset.test), ("paraphrased", dataset.paraphrased_test)):
                table = evaluate_retriever(retriever, split, ks)
                per_seed.append(
                    table.group_by("metric", "k").agg(pl.col("value").mean(), pl.len().alias("n_queries"))
                    .with_columns(system=pl.lit(system), query_set=pl.lit(query_set), seed=pl.lit(seed))
                )
    seed_table = pl.concat(per_seed).select("system", "query_set", "seed", "metric", "k", "value", "n_queries")
    summary = summarise_over_seeds(seed_table)
    if out is not None:
        write_parquet(seed_table.to_arrow(), out / "text_retrieval_per_seed.parquet")
        write_parquet(summary.to_arrow(), out / "text_retrieval.parquet")
    return summary
