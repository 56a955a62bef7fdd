"""`LeanQueryEncoder` (numpy) reproduces sentence-transformers' vectors for the bundled all-MiniLM-L6-v2 (and a copy
saved by `TextBiEncoder.save`), its GELU is the exact-erf one, a lean `TextSearchIndex` returns the same results,
and `musicrec search` runs without importing torch, sentence-transformers or transformers."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recommenders.query_encoder import LeanQueryEncoder, gelu, plan_folder
from recommenders.text_biencoder import TextBiEncoder, bundled_model_path
from recommenders.text_search import TextSearchIndex

ROOT = Path(__file__).resolve().parents[1]

QUERIES = [
    "calm piano",
    "a gentle solo piano piece, slow and calm",
    "Energetic ROCK with LOUD drums!!!",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines",
    "jazz; saxophone (tenor) -- late-night vibe?",
    "café, déjà vu, naïve crème brûlée",
    "Ölgemälde für Streichquartett",
    "日本の伝統音楽と尺八",
    "музыка для сна",
    "emoji 🎹🎸 and symbols #$%&*",
    "x",
    "?!",
    "1990s hip-hop, 90 bpm, boom-bap",
    "choir singing a sad hymn in a cathedral",
    "electronic dance music with heavy bass drops and synth leads",
    "don't stop believin'",
    "ambient drone " * 3,
    "a very long request about strings and brass " * 40,  # far beyond max_seq_length tokens
    "metal",
]

TRACKS = pl.DataFrame(
    {
        "track_id": [f"t{i}" for i in range(8)],
        "artist_id": ["a1", "a2", "a3", "a1", "a2", "a3", "a1", "a2"],
        "title": ["Night Chorale", "Road Anthem", "Hymn of Voices", "Blue Smoke", "Neon Pulse", "Dust Road",
                  "Quiet Rain", "Iron Waltz"],
        "tags": [["piano", "slow", "calm"], ["guitar", "fast", "energetic", "drums"], ["choir", "melancholic"],
                 ["jazz", "saxophone"], ["electronic", "dance", "bass"], ["country", "guitar"],
                 ["ambient", "rain", "calm"], ["metal", "waltz"]],
        "caption": ["A calm solo piano piece at a slow tempo.", "An energetic guitar track with a driving beat.",
                    None, "Late-night jazz with a tenor saxophone.", "Club music with heavy bass drops.", None,
                    "Soft ambient textures with rain sounds.", "Heavy guitars in three-four time."],
    }
)


@pytest.fixture(scope="module")
def reference() -> TextBiEncoder:
    return TextBiEncoder.load(bundled_model_path(), device="cpu")


@pytest.fixture(scope="module")
def lean() -> LeanQueryEncoder:
    return LeanQueryEncoder.load(bundled_model_path())


def assert_same_vectors(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert np.all(cosine > 1 - 1e-5)


def test_bundled_model_is_supported_with_its_settings(lean) -> None:
    folder = bundled_model_path()
    assert LeanQueryEncoder.supports(folder)
    plan = plan_folder(folder)
    assert (plan.pooling, plan.normalize, plan.max_seq_length, plan.num_layers) == ("mean", True, 256, 6)
    assert lean.dim == 384


def test_vectors_equal_sentence_transformers(lean, reference) -> None:
    ids, _, mask = lean.tokenize([QUERIES[-2]])
    assert ids.shape[1] == 256 and bool(mask.all())  # the long query is truncated to max_seq_length
    ours = lean.encode(QUERIES)
    assert_same_vectors(ours, reference.encode(QUERIES))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    one_by_one = np.concatenate([lean.encode([q]) for q in QUERIES])  # padding does not change a vector
    np.testing.assert_allclose(one_by_one, ours, atol=1e-6, rtol=0)
    assert lean.encode([]).shape == (0, 384)


def test_encode_runs_blas_on_one_thread_and_restores_the_pools(lean) -> None:
    from threadpoolctl import threadpool_info

    before = [(pool["filepath"], pool["num_threads"]) for pool in threadpool_info()]
    seen = []
    token_states = lean.token_states

    def spy(*args):
        seen.extend(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return token_states(*args)

    lean.token_states = spy
    try:
        lean.encode(["calm piano"])
    finally:
        del lean.token_states
    assert seen and set(seen) == {1}
    assert [(pool["filepath"], pool["num_threads"]) for pool in threadpool_info()] == before


def test_gelu_is_the_exact_erf_one() -> None:
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(np.float32)
    exact = np.array([float(v) * 0.5 * math.erfc(-float(v) / math.sqrt(2)) for v in x])  # x * Phi(x)
    ours = gelu(x)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    np.testing.assert_allclose(ours, exact, atol=5e-7, rtol=0)
    tail = (x < -3) & (x > -12)  # the small negative tail keeps its relative precision
    np.testing.assert_allclose(ours[tail], exact[tail], rtol=1e-5, atol=0)
    block = x[:60_000].reshape(3, 20, 1000)  # any shape; blocks span rows
    np.testing.assert_array_equal(gelu(block), ours[:60_000].reshape(3, 20, 1000))


def test_a_saved_fine_tuned_folder_matches_too(reference, tmp_path) -> None:
    """`TextBiEncoder.save` writes sentence-transformers' current format (pooling_mode, no max_seq_length in
    sentence_bert_config.json): the lean encoder reads it the same way."""
    folder = reference.save(tmp_path / "model")
    assert LeanQueryEncoder.supports(folder)
    saved = TextBiEncoder.load(folder, device="cpu")
    assert_same_vectors(LeanQueryEncoder.load(folder).encode(QUERIES), saved.encode(QUERIES))


def variant(tmp_path: Path, edit: dict[str, object], drop: str | None = None) -> Path:
    """A copy of the bundled folder's small files (weights linked), with files replaced by `edit` (relative
    path -> JSON content) and `drop` left out."""
    source, folder = bundled_model_path(), tmp_path / "variant"
    for path in source.rglob("*"):
        if path.is_file() and path.name != drop:
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path) if path.suffix == ".safetensors" else target.write_bytes(path.read_bytes())
    for name, content in edit.items():
        (folder / name).write_text(json.dumps(content))
    return folder


@pytest.mark.parametrize("edit, drop", [
    ({"1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_max_tokens": True}}, None),
    ({"1_Pooling/config.json": {"embedding_dimension": 384, "pooling_mode": "weightedmean"}}, None),
    ({"modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                       {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                       {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]},
     None),
    ({"config.json": {"model_type": "roberta", "hidden_act": "gelu", "hidden_size": 384, "num_attention_heads": 12,
                      "num_hidden_layers": 6}}, None),
    ({"config_sentence_transformers.json": {"default_prompt_name": "query", "prompts": {"query": "query: "}}}, None),
    ({}, "model.safetensors"),
    ({}, "tokenizer.json"),
])
def test_unsupported_folders_are_refused(tmp_path, edit, drop) -> None:
    folder = variant(tmp_path, edit, drop)
    assert not LeanQueryEncoder.supports(folder)
    with pytest.raises(ValueError):
        LeanQueryEncoder.load(folder)


def test_an_unchanged_copy_is_supported(tmp_path) -> None:
    assert LeanQueryEncoder.supports(variant(tmp_path, {}))


def test_bfloat16_encoder_stays_close_to_float32(lean) -> None:
    """bfloat16 linear layers (torch's oneDNN): every vector within cosine 0.9999 of the float32 one, and the
    nearest track of each query over the test catalog unchanged (bfloat16 rounds the inputs of each product,
    a relative error of about 2^-9 that accumulated to cosines above 0.99998 in measurements)."""
    half = LeanQueryEncoder.load(bundled_model_path(), precision="bfloat16")
    full, rounded = lean.encode(QUERIES), half.encode(QUERIES)
    assert rounded.dtype == np.float32 and rounded.shape == full.shape
    cosine = (full * rounded).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(rounded, axis=1)
    assert cosine.min() > 0.9999
    assert not np.array_equal(full, rounded)  # the products really ran in bfloat16
    catalog = lean.encode([f"{' '.join(t)}. {c or ''}" for t, c in zip(TRACKS["tags"], TRACKS["caption"])])
    assert np.array_equal((full @ catalog.T).argmax(1), (rounded @ catalog.T).argmax(1))


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        LeanQueryEncoder.load(bundled_model_path(), precision="float16")


@pytest.fixture(scope="module")
def index_folder(reference, tmp_path_factory) -> Path:
    return TextSearchIndex.build(TRACKS, None, encoder=reference).save(tmp_path_factory.mktemp("search"))


def test_lean_index_returns_the_same_results(index_folder) -> None:
    normal = TextSearchIndex.load(index_folder, device="cpu")
    lean = TextSearchIndex.load(index_folder, lean=True)
    assert isinstance(lean.encoder, LeanQueryEncoder) and isinstance(normal.encoder, TextBiEncoder)
    for query in QUERIES:
        ours, theirs = lean.search(query, k=8), normal.search(query, k=8)
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
        # rows may only swap places where their scores tie within rounding
        assert {t for t, _ in ours} == {t for t, _ in theirs}
        for (a, sa), (b, sb) in zip(ours, theirs):
            assert a == b or abs(sa - sb) < 1e-5


def test_lean_load_falls_back_for_unsupported_models(index_folder, tmp_path) -> None:
    folder = variant(tmp_path, {"1_Pooling/config.json": {"word_embedding_dimension": 384,
                                                          "pooling_mode_cls_token": False,
                                                          "pooling_mode_mean_tokens": False,
                                                          "pooling_mode_max_tokens": True}})
    config = json.loads((index_folder / "config.json").read_text())
    copy = tmp_path / "index"
    copy.mkdir()
    for name in ("index.faiss", "tracks.parquet"):
        (copy / name).symlink_to(index_folder / name)
    (copy / "config.json").write_text(json.dumps({**config, "model_folder": str(folder)}))
    assert isinstance(TextSearchIndex.load(copy, device="cpu", lean=True).encoder, TextBiEncoder)


def test_cli_search_never_imports_torch_or_sentence_transformers(index_folder) -> None:
    script = (
        "import sys\n"
        "from pipelines.cli import main\n"
        f"status = main(['search', 'a calm piano piece', '-k', '2', '--storage', {str(index_folder)!r}])\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('torch', 'sentence_transformers', 'transformers'))\n"
        "print('STATUS', status, 'HEAVY', heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "STATUS 0 HEAVY []" in done.stdout, done.stdout
    assert "Night Chorale" in done.stdout.splitlines()[0]


def test_auto_precision_follows_the_cpu() -> None:
    from recommenders.index import native_bfloat16
    from recommenders.query_encoder import resolve_precision

    assert resolve_precision("auto") == ("bfloat16" if native_bfloat16() else "float32")
    assert [resolve_precision(p) for p in ("float32", "bfloat16")] == ["float32", "bfloat16"]
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        resolve_precision("int8")
