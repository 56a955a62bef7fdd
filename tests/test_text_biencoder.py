"""The bundled bi-encoder loads with the network disabled; hard-negative mining and batching follow their
rules; a tiny fine-tune changes the model, which saves and loads identically."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from recommenders.text_biencoder import (
    PROVENANCE_FILE,
    FineTuneSettings,
    TextBiEncoder,
    Triplet,
    bundled_model_path,
    distinct_positive_batches,
    mine_hard_negatives,
)

QUERIES = ["A calm solo piano piece at a slow tempo.", "An energetic guitar track with a driving drum beat.",
           "A choir sings a melancholic chorale.", "Bright brass fanfare in a high register."]
DOCUMENTS = ["piano, slow, calm", "guitar, fast, energetic, drums", "choir, melancholic, chorale",
             "brass, bright, high register"]


@pytest.fixture(scope="module")
def encoder() -> TextBiEncoder:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    try:
        yield TextBiEncoder.load(device="cpu")
    finally:
        monkeypatch.undo()


def test_bundled_model_loads_offline_and_encodes_unit_vectors(encoder: TextBiEncoder) -> None:
    assert encoder.source == str(bundled_model_path())
    vectors = encoder.encode(QUERIES)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_pretrained_ranks_matching_descriptor_first(encoder: TextBiEncoder) -> None:
    assert encoder.rank(QUERIES, DOCUMENTS, k=4)[:, 0].tolist() == [0, 1, 2, 3]


def test_hard_negatives_skip_documents_that_share_the_positive_tag_set(encoder: TextBiEncoder) -> None:
    corpus = DOCUMENTS + ["piano, calm", "piano, slow, calm, low register", "organ, slow, calm"]
    triplets = mine_hard_negatives(encoder, [(QUERIES[0], DOCUMENTS[0])], corpus, pool=1)
    assert triplets == [Triplet(QUERIES[0], DOCUMENTS[0], "organ, slow, calm")]


def test_batches_never_repeat_a_positive() -> None:
    triplets = [Triplet(f"q{i}", f"p{i % 3}", f"p{(i + 1) % 3}" if i % 2 else f"n{i}") for i in range(12)]
    batches = distinct_positive_batches(triplets, 4, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(12))
    for batch in batches:
        positives = [triplets[i].positive for i in batch]
        assert len(set(positives)) == len(positives)
        assert not {triplets[i].negative for i in batch} & set(positives)


def test_tiny_fine_tune_changes_model_and_round_trips(encoder: TextBiEncoder, tmp_path) -> None:
    model = TextBiEncoder.load(device="cpu")
    before = model.encode(QUERIES)
    negatives = ["organ, low register", "harp, calm", "synth, fast", "strings, slow"]
    triplets = [Triplet(*example) for example in zip(QUERIES, DOCUMENTS, negatives)]  # one batch per epoch
    calls = []
    report = model.fine_tune(triplets, FineTuneSettings(epochs=2, batch_size=4, learning_rate=1e-4, seed=0),
                             evaluate=lambda m: calls.append(1) or float(len(calls)))
    assert report.steps == 2 and report.best_epoch == 2 and len(report.epoch_loss) == 2
    after = model.encode(QUERIES)
    assert not np.allclose(before, after, atol=1e-4)
    folder = model.save(tmp_path / "model")
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / PROVENANCE_FILE).read_text())["report"]["steps"] == 2
    reloaded = TextBiEncoder.load(folder, device="cpu")
    assert np.allclose(reloaded.encode(QUERIES), after, atol=1e-6)
    # the loss on the training triplets went down: positives score higher against their queries
    gain = np.diag(after @ model.encode(DOCUMENTS).T) - np.diag(before @ encoder.encode(DOCUMENTS).T)
    assert gain.mean() > 0


def test_fine_tune_is_seeded(tmp_path) -> None:
    triplets = [Triplet(q, d, DOCUMENTS[(i + 2) % 4]) for i, (q, d) in enumerate(zip(QUERIES, DOCUMENTS))]
    runs = []
    for _ in range(2):
        model = TextBiEncoder.load(device="cpu")
        model.fine_tune(triplets, FineTuneSettings(epochs=1, batch_size=2, max_steps=1, seed=5))
        runs.append(model.encode(QUERIES[:1]))
    assert np.allclose(runs[0], runs[1], atol=1e-6)


def test_missing_model_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no modules.json"):
        TextBiEncoder.load(tmp_path)
