"""The natural-language retrieval data set (published protocol), paraphrases, TF-IDF, metrics over seeds, and
the LP-MusicCaps adapter. No neural model is loaded here."""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.lpmusiccaps import read_lpmusiccaps
from evaluation.text_retrieval import (
    WORD,
    build_paraphrase_map,
    build_retrieval_dataset,
    caption_sentences,
    evaluate_retriever,
    paraphrase,
    summarise_over_seeds,
    tag_words,
)
from recommenders.text_biencoder import TfidfRetriever, top_k_rows

INSTRUMENTS = ("piano", "strings", "choir", "organ", "guitar", "synth")
TEMPO_MOOD = {"slow": "calm", "medium": "steady", "fast": "energetic"}


def toy_tracks(n: int = 40) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        instrument, tempo = str(rng.choice(INSTRUMENTS)), str(rng.choice(list(TEMPO_MOOD)))
        register = str(rng.choice(["low", "mid", "high"]))
        tags = [instrument, tempo, TEMPO_MOOD[tempo], f"{register} register", "chorale"]
        caption = (f"A {TEMPO_MOOD[tempo]} solo {instrument} piece in a {register} register at a {tempo} tempo. "
                   f"The harmony sounds warm. Ok.")
        rows.append((f"t{i:02d}", tags, caption if i % 10 else None))  # every tenth caption is missing
    return pl.DataFrame(rows, schema={"track_id": pl.String, "tags": pl.List(pl.String), "caption": pl.String},
                        orient="row")


def test_caption_sentences_split_and_drop_short() -> None:
    assert caption_sentences("A calm piano piece. It is slow! Ok.") == ["A calm piano piece.", "It is slow!"]
    assert caption_sentences(None) == []


def test_builder_one_relevant_document_and_disjoint_tracks() -> None:
    tracks = toy_tracks()
    data = build_retrieval_dataset(tracks, seed=0)
    splits = (data.train, data.validation, data.test)
    owners = []
    for split in splits:
        assert split.queries["relevant"].list.len().to_list() == [1] * split.queries.height
        doc_ids = set(split.documents["doc_id"])
        assert all(rel[0] in doc_ids for rel in split.queries["relevant"])
        track_ids = {q.split("#")[0] for q in split.queries["query_id"]}
        owners.append(track_ids)
        # every document track belongs to this split, and documents are subsets of the track's tags
        tags_of = dict(zip(tracks["track_id"], tracks["tags"]))
        for text, ids in zip(split.documents["text"], split.documents["track_ids"]):
            assert set(ids) <= track_ids
            assert all(set(text.split(", ")) <= set(tags_of[t]) for t in ids)
            assert len(text.split(", ")) >= 2
    assert not owners[0] & owners[1] and not owners[0] & owners[2] and not owners[1] & owners[2]
    # 36 captioned tracks (4 without caption are skipped), 2 sentences each ("Ok." is too short)
    assert sum(len(o) for o in owners) == 36
    assert sum(s.queries.height for s in splits) == 72
    assert [len(o) for o in owners] == [25, 4, 7]


def test_builder_is_deterministic_per_seed() -> None:
    tracks = toy_tracks()
    a, b, c = (build_retrieval_dataset(tracks, seed=s) for s in (3, 3, 4))
    assert a.test.queries.equals(b.test.queries) and a.train.documents.equals(b.train.documents)
    assert not a.test.queries.equals(c.test.queries)


def test_paraphrased_queries_avoid_every_tag_word() -> None:
    tracks = toy_tracks()
    vocabulary = tag_words(tracks["tags"].to_list())
    data = build_retrieval_dataset(tracks, seed=1)
    paraphrased = data.paraphrased_test.queries
    assert paraphrased["query_id"].to_list() == data.test.queries["query_id"].to_list()
    assert paraphrased["relevant"].to_list() == data.test.queries["relevant"].to_list()
    for text in paraphrased["text"]:
        assert not set(WORD.findall(text.lower())) & vocabulary, text
    mapping = build_paraphrase_map(vocabulary)
    assert (mapping["piano"], mapping["calm"], mapping["fast"]) == ("keys", "gentle", "upbeat")
    assert paraphrase("A calm solo piano piece at a fast tempo.", mapping) == \
        "A gentle solo keys piece at a upbeat tempo."  # "tempo" is no tag here


def test_paraphrase_map_skips_alternatives_that_are_tags_and_drops_unknown_words() -> None:
    mapping = build_paraphrase_map({"calm", "gentle", "zither"})
    assert mapping == {"calm": "peaceful", "gentle": "", "zither": ""}
    assert paraphrase("A calm, gentle zither.", mapping) == "A peaceful,."


def test_tfidf_ranks_the_exact_tag_document_first() -> None:
    documents = ["piano, slow, calm", "guitar, fast, energetic", "choir, medium, steady", "organ, low register"]
    rows = TfidfRetriever().rank(["energetic guitar", "a calm piano", "organ in a low register"], documents, k=2)
    assert rows[:, 0].tolist() == [1, 0, 3]
    assert rows.shape == (3, 2)


def test_top_k_rows_breaks_ties_by_column_order() -> None:
    assert top_k_rows(np.array([[0.5, 0.9, 0.5, 0.1]]), 3).tolist() == [[1, 0, 2]]


class FixedRetriever:
    name = "fixed"

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = np.array(rows)

    def rank(self, queries, documents, k):
        return self.rows[:, :k]


def test_evaluate_retriever_recall_mrr_ndcg_by_hand() -> None:
    data = build_retrieval_dataset(toy_tracks(), seed=0)
    split = data.test
    doc_row = {d: i for i, d in enumerate(split.documents["doc_id"])}
    n_docs = split.documents.height
    rows = []
    for i, rel in enumerate(split.queries["relevant"]):
        target = doc_row[rel[0]]
        others = [r for r in range(n_docs) if r != target]
        # query 0: relevant at rank 2; every other query: relevant at rank 1
        rows.append(others[:1] + [target] + others[1:] if i == 0 else [target] + others)
    table = evaluate_retriever(FixedRetriever(rows), split, ks=(10,))
    means = dict(table.group_by("metric").agg(pl.col("value").mean()).iter_rows())
    n = split.queries.height
    assert means["recall"] == pytest.approx(1.0)
    assert means["mrr"] == pytest.approx((n - 1 + 0.5) / n)
    assert means["ndcg"] == pytest.approx((n - 1 + 1 / np.log2(3)) / n)


def test_summary_over_seeds_gives_t_interval() -> None:
    seed_table = pl.DataFrame({"system": ["tfidf"] * 3, "query_set": ["caption"] * 3, "seed": [0, 1, 2],
                               "metric": ["recall"] * 3, "k": [10] * 3, "value": [0.5, 0.6, 0.7]})
    row = summarise_over_seeds(seed_table).row(0, named=True)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
    assert row["mean"] == pytest.approx(0.6)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.6 - half, 0.6 + half))
    assert row["n_seeds"] == 3


def test_lpmusiccaps_adapter_reads_list_and_stringified_tags(tmp_path) -> None:
    mc = tmp_path / "mc.parquet"
    pq.write_table(pa.table({"ytid": ["a1", "b2"], "aspect_list": ["['piano', ' calm ']", "[]"],
                             "caption_writing": ["A calm piano.", "  "]}), mc)
    frame = read_lpmusiccaps(mc)
    assert frame.to_dicts() == [{"track_id": "a1", "tags": ["piano", "calm"], "caption": "A calm piano."},
                                {"track_id": "b2", "tags": [], "caption": None}]
    mtt = tmp_path / "mtt.parquet"
    pq.write_table(pa.table({"track_id": ["1"], "tag_top50": [["guitar", "rock"]], "caption_writing": ["Loud."]}),
                   mtt)
    assert read_lpmusiccaps(mtt)["tags"].to_list() == [["guitar", "rock"]]


def test_lpmusiccaps_adapter_names_file_and_problem(tmp_path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"ytid": ["a"], "aspect_list": ["piano, calm"], "caption_writing": ["x"]}), bad)
    with pytest.raises(ValueError, match=r"bad.parquet: row 0: tag cell"):
        read_lpmusiccaps(bad)
    pq.write_table(pa.table({"ytid": ["a"], "caption_writing": ["x"]}), bad)
    with pytest.raises(ValueError, match="no tag column"):
        read_lpmusiccaps(bad)
