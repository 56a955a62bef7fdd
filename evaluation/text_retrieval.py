"""Natural-language music retrieval: the data set of the published protocol (arXiv 2411.05649), a paraphrased
query set, and the TF-IDF / pretrained / fine-tuned comparison with confidence intervals over seeds.

Protocol. Each sentence of a track's caption is a query. The track's document is a seeded random subset of its
tags joined by ", " (at least `min_tags` tags, or all when it has fewer). Identical documents are merged, so
every query has exactly one relevant document (which may describe several tracks). Tracks, not queries, are
split into train / validation / test, so no track feeds two splits. The evaluation corpus of a split is that
split's documents. Recall@10 equals HitRate@10 here, since each query has one relevant document.

Paraphrased queries rewrite every word that occurs in any tag of the catalog with a word outside the tag
vocabulary ("piano" -> "keys", "calm" -> "gentle", "fast" -> "upbeat"), or drop it when the lexicon has no such
word. They measure retrieval when a request does not reuse the catalog's words, where lexical matching fails.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl

from evaluation.metrics import per_user_metrics
from evaluation.stats import mean_ci

DESCRIPTOR_SEPARATOR = ", "  # song descriptors are tags joined by this separator (the published protocol)


class TextRetriever(Protocol):
    """Anything that ranks a corpus of documents for each of a batch of queries."""

    name: str

    def rank(self, queries: Sequence[str], documents: Sequence[str], k: int) -> np.ndarray:
        """int64 (len(queries), min(k, len(documents))): document rows per query, best first."""



SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"[a-z0-9]+")
TOKEN = re.compile(r"[A-Za-z0-9]+")
SYSTEMS: tuple[str, ...] = ("tfidf", "pretrained", "finetuned")
QUERY_SETS: tuple[str, ...] = ("caption", "paraphrased")
METRICS: tuple[str, ...] = ("recall", "mrr", "ndcg")

# Alternatives for music words, in order of preference; the first one sharing no word with the catalog's tag
# vocabulary replaces the word. Covers the demo catalog and the frequent LP-MusicCaps / MagnaTagATune tags.
LEXICON: dict[str, tuple[str, ...]] = {
    "piano": ("keys", "keyboard"), "strings": ("violins", "bowed section"), "string": ("bowed", "violin"),
    "choir": ("voices", "chorus"), "choral": ("sung", "vocal ensemble"), "organ": ("harmonium", "pipes"),
    "brass": ("horns", "trumpets"), "woodwinds": ("reeds", "flutes"), "woodwind": ("reed", "flute"),
    "guitar": ("six string", "fretboard"), "guitars": ("six strings", "fretboards"),
    "mallets": ("vibraphone", "marimba"), "harpsichord": ("clavecin", "plucked keys"),
    "synth": ("electronic", "synthesized"), "synthesizer": ("electronic", "synthesized"),
    "violin": ("fiddle",), "flute": ("fife", "piccolo"), "drums": ("kit", "rhythm section"),
    "drum": ("kit", "rhythm"), "percussion": ("rhythm section", "kit"), "beat": ("groove", "pulse"),
    "beats": ("grooves", "pulses"), "vocal": ("singing", "sung"), "vocals": ("singing", "voices"),
    "voice": ("singer", "singing"), "female": ("woman", "women"), "male": ("man", "men"),
    "slow": ("unhurried", "leisurely"), "medium": ("moderate", "midtempo"), "fast": ("upbeat", "quick"),
    "tempo": ("pace", "speed"), "calm": ("gentle", "peaceful"), "steady": ("even", "measured"),
    "energetic": ("lively", "vigorous"), "low": ("deep", "bass"), "mid": ("middle", "central"),
    "high": ("upper", "lofty"), "register": ("range", "pitch range"), "bright": ("cheerful", "sunny"),
    "melancholic": ("wistful", "sorrowful"), "sad": ("sorrowful", "mournful"), "happy": ("joyful", "cheerful"),
    "chorale": ("hymn", "hymn tune"), "march": ("parade tune", "quickstep"), "waltz": ("triple time dance",),
    "ballad": ("love song", "story song"), "fugue": ("counterpoint", "canon"), "soft": ("quiet", "delicate"),
    "quiet": ("hushed", "faint"),
    "loud": ("noisy", "booming"), "classical": ("orchestral", "concert"), "ambient": ("atmospheric",),
    "dance": ("club", "party"), "rock": ("guitar driven",), "pop": ("chart", "mainstream"),
    "electronic": ("electro", "synthesized"), "jazz": ("swing", "bebop"), "instrumental": ("wordless",),
    "relaxing": ("soothing", "restful"), "mellow": ("smooth", "laid back"), "heavy": ("weighty", "dense"),
    "light": ("airy", "delicate"), "driving": ("propulsive", "pushing"), "dark": ("gloomy", "somber"),
    "emotional": ("moving", "heartfelt"), "groove": ("swing", "pocket"), "bass": ("low end", "bottom end"),
}


def caption_sentences(caption: str | None, min_words: int = 3) -> list[str]:
    """The sentences of a caption (split after . ! ?) with at least `min_words` words; [] for null."""
    if not caption:
        return []
    sentences = (s.strip() for s in SENTENCE_END.split(caption.strip()))
    return [s for s in sentences if len(WORD.findall(s.lower())) >= min_words]


def sample_descriptor(tags: Sequence[str], rng: np.random.Generator, min_tags: int = 2) -> str:
    """A uniformly sized random subset (at least min(min_tags, n) tags) of the distinct `tags`, in their
    original order, joined by ", "."""
    distinct = list(dict.fromkeys(t.strip() for t in tags if t and t.strip()))
    if not distinct:
        raise ValueError("sample_descriptor: no tags")
    size = int(rng.integers(min(min_tags, len(distinct)), len(distinct) + 1))
    chosen = np.sort(rng.choice(len(distinct), size=size, replace=False))
    return DESCRIPTOR_SEPARATOR.join(distinct[i] for i in chosen)


def tag_words(tags: Iterable[Iterable[str]]) -> frozenset[str]:
    """Every lower-case word occurring in any tag."""
    return frozenset(w for track_tags in tags for tag in track_tags for w in WORD.findall(tag.lower()))


def build_paraphrase_map(words: Iterable[str], lexicon: Mapping[str, Sequence[str]] = LEXICON) -> dict[str, str]:
    """tag word -> its replacement: the first lexicon alternative none of whose words is a tag word, or ""
    (the word is dropped) when there is none. Deterministic in the vocabulary."""
    vocabulary = frozenset(words)
    mapping = {}
    for word in sorted(vocabulary):
        allowed = [alt for alt in lexicon.get(word, ()) if not set(WORD.findall(alt.lower())) & vocabulary]
        mapping[word] = allowed[0] if allowed else ""
    return mapping


def paraphrase(text: str, mapping: Mapping[str, str]) -> str:
    """`text` with every word of `mapping` replaced (or removed when mapped to ""); spacing tidied.
    Raises ValueError if a mapped word would survive (the guarantee paraphrased queries rest on)."""
    rewritten = TOKEN.sub(lambda m: mapping.get(m.group(0).lower(), m.group(0)), text)
    rewritten = re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s{2,}", " ", rewritten)).strip()
    left = set(WORD.findall(rewritten.lower())) & set(mapping)
    if left:
        raise ValueError(f"paraphrase kept tag word(s) {sorted(left)} in {rewritten!r}")
    return rewritten


@dataclass(frozen=True)
class RetrievalSplit:
    """Queries (the `queries` contract: query_id, text, relevant = [doc_id]) and their corpus (doc_id, text,
    track_ids: the tracks that document describes)."""

    queries: pl.DataFrame
    documents: pl.DataFrame

    def pairs(self) -> list[tuple[str, str]]:
        """(query text, relevant document text) per query."""
        text_of = dict(zip(self.documents["doc_id"], self.documents["text"]))
        return [(q, text_of[rel[0]]) for q, rel in zip(self.queries["text"], self.queries["relevant"])]


@dataclass(frozen=True)
class RetrievalDataset:
    """One seed's data set: caption queries of train / validation / test, and the test queries paraphrased
    (same ids, documents and relevance)."""

    seed: int
    train: RetrievalSplit
    validation: RetrievalSplit
    test: RetrievalSplit
    paraphrased_test: RetrievalSplit


def _doc_id(text: str) -> str:
    return "doc-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _split(tracks: list[tuple[str, list[str], list[str]]], rng: np.random.Generator, min_tags: int) -> RetrievalSplit:
    """tracks: (track_id, tags, sentences) -> one split; documents sampled with `rng`."""
    queries: list[tuple[str, str, list[str]]] = []
    owners: dict[str, list[str]] = {}
    for track_id, tags, sentences in tracks:
        document = sample_descriptor(tags, rng, min_tags)
        owners.setdefault(document, []).append(track_id)
        queries += [(f"{track_id}#s{j}", s, [_doc_id(document)]) for j, s in enumerate(sentences)]
    documents = pl.DataFrame(
        [(_doc_id(t), t, ids) for t, ids in owners.items()],
        schema={"doc_id": pl.String, "text": pl.String, "track_ids": pl.List(pl.String)}, orient="row",
    )
    return RetrievalSplit(
        pl.DataFrame(queries, schema={"query_id": pl.String, "text": pl.String, "relevant": pl.List(pl.String)},
                     orient="row"),
        documents,
    )


def build_retrieval_dataset(
    tracks: pl.DataFrame,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    min_tags: int = 2,
    min_words: int = 3,
) -> RetrievalDataset:
    """The retrieval data set of one seed from a table with track_id, tags list<str>, caption str (nullable).

    Tracks without caption sentences or tags are skipped. `fractions` (train, validation, test) split the
    shuffled tracks. Raises ValueError when a split would be empty.
    """
    missing = {"track_id", "tags", "caption"} - set(tracks.columns)
    if missing:
        raise ValueError(f"build_retrieval_dataset: tracks table lacks column(s) {sorted(missing)}")
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    usable = []
    for track_id, tags, caption in tracks.select("track_id", "tags", "caption").sort("track_id").iter_rows():
        sentences = caption_sentences(caption, min_words)
        if sentences and tags and any(t.strip() for t in tags):
            usable.append((track_id, list(tags), sentences))
    rng = np.random.default_rng(seed)
    order = [usable[i] for i in rng.permutation(len(usable))]
    n_train = int(round(fractions[0] * len(order)))
    n_validation = int(round(fractions[1] * len(order)))
    parts = order[:n_train], order[n_train:n_train + n_validation], order[n_train + n_validation:]
    if not all(parts):
        raise ValueError(
            f"build_retrieval_dataset: {len(usable)} usable tracks (caption + tags) give split sizes "
            f"{[len(p) for p in parts]}; every split needs at least one track"
        )
    train, validation, test = (_split(part, rng, min_tags) for part in parts)
    mapping = build_paraphrase_map(tag_words(tracks["tags"].drop_nulls().to_list()))
    paraphrased = test.queries.with_columns(
        pl.col("text").map_elements(lambda t: paraphrase(t, mapping), return_dtype=pl.String)
    ).filter(pl.col("text").str.contains(r"[A-Za-z0-9]"))
    return RetrievalDataset(seed, train, validation, test, RetrievalSplit(paraphrased, test.documents))


def evaluate_retriever(
    retriever: TextRetriever, split: RetrievalSplit, ks: Sequence[int] = (10,), metrics: Sequence[str] = METRICS
) -> pl.DataFrame:
    """Per-query metrics (evaluation.metrics: user_id = query_id, metric, k, value) of `retriever` ranking
    the split's documents for each of its queries."""
    doc_ids = split.documents["doc_id"].to_list()
    rows = retriever.rank(split.queries["text"].to_list(), split.documents["text"].to_list(), max(ks))
    query_ids = split.queries["query_id"].to_list()
    rankings = {q: [doc_ids[r] for r in ranked] for q, ranked in zip(query_ids, rows)}
    relevant = {q: set(rel) for q, rel in zip(query_ids, split.queries["relevant"].to_list())}
    return per_user_metrics(rankings, relevant, ks, metrics)


def summarise_over_seeds(seed_table: pl.DataFrame) -> pl.DataFrame:
    """system, query_set, metric, k, mean, ci_low, ci_high, n_seeds from one value per seed."""
    rows = []
    keys = ("system", "query_set", "metric", "k")
    for key, group in seed_table.group_by(keys, maintain_order=True):
        mean, low, high = mean_ci(group["value"].to_numpy())
        rows.append((*key, mean, low, high, group.height))
    schema = {"system": pl.String, "query_set": pl.String, "metric": pl.String, "k": pl.Int32,
              "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "n_seeds": pl.Int64}
    order = {s: i for i, s in enumerate(SYSTEMS)}
    return (pl.DataFrame(rows, schema=schema, orient="row")
            .sort(pl.col("query_set"), pl.col("system").replace_strict(order, default=len(order)), "metric", "k"))
