"""Text search: warm query latency and command-line cold start, ours against a plain sentence-transformers +
faiss script with the same encoder weights and the same item vectors.

Items: a synthetic catalog of `TRACKS` tracks, each with 3 tags from `benchmarks.serve.TAGS` and a caption made
of them, indexed by ours (`recommenders.text_search.build_search_index`, bundled all-MiniLM-L6-v2). Queries:
`benchmarks.serve.QUERIES`, k = 10.

Ours, warm: `TextSearchIndex.load(folder, lean=True).search(text, k)` after one warm-up query: the numpy query
encoder on one thread, as `musicrec search` and the server's search worker run it (the torch encoder's latency,
`lean=False`, is in the note). Ours, cold: the wall time of `musicrec search TEXT --storage folder` (imports,
model and index load, one query, printing).
Anchor (the same two measurements): a script that does it plainly, `SentenceTransformer(<bundled model
folder>).encode([text], normalize_embeddings=True)` then `faiss.read_index(<our index.faiss>).search(vector, k)`;
it runs through `benchmarks.anchors.run_in_venv` (from the main .venv when sentence-transformers and faiss import
there, as they do in this project), with 2 torch threads; latency is the median over 5 passes of the queries.
Goals: warm ours/anchor <= 1.2 (ratio column >= 0.83) and cold start <= 2 s.

    .venv/bin/python benchmarks/anchors.py --only text_search [--quick]
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from benchmarks.anchors import REPO, device_label, run_in_venv, wall_and_cpu
from benchmarks.serve import QUERIES, TAGS
from recommenders.text_biencoder import bundled_model_path
from recommenders.text_search import TextSearchIndex, build_search_index

TRACKS, K, THREADS, PASSES, COLD_RUNS = 2000, 10, 2, 5, 3
WARM_GOAL, COLD_GOAL_S = 1.2, 2.0

PLAIN = '''
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import faiss, torch
from sentence_transformers import SentenceTransformer
folder, model_path, k, threads, passes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
queries = json.loads(sys.argv[6])
torch.set_num_threads(threads)
model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
index = faiss.read_index(os.path.join(folder, "index.faiss"))
def search(text):
    vector = model.encode([text], normalize_embeddings=True, convert_to_numpy=True)
    return index.search(vector, k)[1][0].tolist()
if passes == 0:  # cold start: one query, printed
    print(search(queries[0]))
    sys.exit(0)
search(queries[0])
seconds, tops = [], {}
for _ in range(passes):
    for text in queries:
        start = time.perf_counter()
        tops[text] = search(text)
        seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "tops": tops}))
'''


def synthetic_tracks(n: int, seed: int = 0) -> pl.DataFrame:
    """track_id, title, artist_id, tags (3 of TAGS), caption."""
    rng = np.random.default_rng(seed)
    tags = [sorted(rng.choice(TAGS, 3, replace=False).tolist()) for _ in range(n)]
    return pl.DataFrame({"track_id": [f"t{i:06d}" for i in range(n)], "title": [f"Track {i}" for i in range(n)],
                         "artist_id": [f"a{i % 200:03d}" for i in range(n)], "tags": tags,
                         "caption": [f"A {', '.join(t)} track." for t in tags]},
                        schema_overrides={"tags": pl.List(pl.String)})


def warm_latency(index: TextSearchIndex, passes: int) -> tuple[list[float], dict[str, list[str]]]:
    """Seconds of each `index.search` over `passes` passes of QUERIES after one warm-up query, and the top-K ids
    per query."""
    index.search(QUERIES[0], K)
    seconds, tops = [], {}
    for _ in range(passes):
        for text in QUERIES:
            start = time.perf_counter()
            tops[text] = [track for track, _ in index.search(text, K)]
            seconds.append(time.perf_counter() - start)
    return seconds, tops


def measure(quick: bool) -> list[dict]:
    """Two rows: warm query latency (ms/query) and cold start (s), ours vs the plain script."""
    import json

    torch.set_num_threads(THREADS)
    n_tracks = 500 if quick else TRACKS
    passes = 2 if quick else PASSES
    cold_runs = 1 if quick else COLD_RUNS
    with tempfile.TemporaryDirectory(prefix="musicrec_search_") as tmp:
        folder = build_search_index(synthetic_tracks(n_tracks), None, Path(tmp) / "search")
        load_before = os.getloadavg()[0]
        index = TextSearchIndex.load(folder, lean=True)
        ours_seconds, ours_tops = warm_latency(index, passes)
        torch_seconds, _ = warm_latency(TextSearchIndex.load(folder), passes)
        args = [str(folder), str(bundled_model_path()), str(K), str(THREADS)]
        plain = run_in_venv("text_search", ["sentence-transformers", "faiss-cpu"], PLAIN,
                            args + [str(passes), json.dumps(QUERIES)])
        ids = index.tracks["track_id"].to_list()
        same = sum(ours_tops[q] == [ids[r] for r in plain["tops"][q]] for q in QUERIES)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
        ours_cold, plain_cold = [], []
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
            script.write(PLAIN)
        try:
            for _ in range(cold_runs):  # alternate, so both see the same machine load
                ours_cold.append(wall_and_cpu([str(REPO / ".venv" / "bin" / "musicrec"), "search", QUERIES[0],
                                               "-k", str(K), "--storage", str(folder)], env)[:2])
                plain_cold.append(wall_and_cpu([plain["_python"], script.name, *args, "0",
                                                json.dumps(QUERIES[:1])], env)[:2])
        finally:
            os.unlink(script.name)
        load_after = os.getloadavg()[0]
    device = f"{device_label()}, load avg {load_before:.1f}-{load_after:.1f}"
    ours_ms = 1000 * statistics.median(ours_seconds)
    plain_ms = 1000 * statistics.median(plain["seconds"])
    ours_wall, ours_cpu = (statistics.median(v) for v in zip(*ours_cold))
    plain_wall, plain_cpu = (statistics.median(v) for v in zip(*plain_cold))
    return [{
        "name": f"text search, warm query latency ({n_tracks} tracks, k={K})",
        "ours": ours_ms, "anchor": plain_ms, "unit": "ms/query", "device": device,
        "quality": f"same top-{K} for {same}/{len(QUERIES)} queries",
        "note": (f"ours: the numpy query encoder, 1 thread (the torch encoder, 2 threads: "
                 f"{1000 * statistics.median(torch_seconds):.1f} ms); anchor: SentenceTransformer(bundled "
                 f"all-MiniLM-L6-v2).encode + faiss.read_index(our index).search, {plain['_venv']}; median of "
                 f"{len(ours_seconds)} queries; goal ours/anchor <= {WARM_GOAL} "
                 f"({'met' if ours_ms <= WARM_GOAL * plain_ms else 'missed'}: {ours_ms / plain_ms:.2f})"),
    }, {
        "name": "musicrec search cold start (imports, load, 1 query)",
        "ours": ours_wall, "anchor": plain_wall, "unit": "s", "device": device,
        "note": (f"anchor: the same plain script run once; CPU (user+sys) ours {ours_cpu:.2f} s / anchor "
                 f"{plain_cpu:.2f} s; median of {cold_runs}; goal ours <= {COLD_GOAL_S:.0f} s wall "
                 f"({'met' if ours_wall <= COLD_GOAL_S else 'missed'})"),
    }]


if __name__ == "__main__":
    print(measure(quick=True))
