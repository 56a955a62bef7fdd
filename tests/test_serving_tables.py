"""The serving tables: nearest tracks against a numpy oracle, the incremental similar-tracks update equal to a
full recompute, and a tiny experiment (with its text search study) whose release answers `musicrec recommend /
similar [--audio]` and every endpoint of `musicrec serve` (recommend, similar by id, search, an audio upload),
and is replaced atomically when a new batch of tracks arrives."""
from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import make_folder_catalog, write_tone

from assets.experiment import load_experiment
from assets.serving import merge_similar, nearest_tracks, ranked_table
from catalog.io import ItemVectors
from pipelines.cli import main
from pipelines.run import run_experiment
from recommenders.text_search import TextSearchIndex
from serving.snapshot import current_release, load_current


def vectors(n: int, seed: int = 0, dim: int = 8) -> ItemVectors:
    return ItemVectors([f"t{i:03d}" for i in range(n)],
                       np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))


def test_nearest_tracks_match_a_numpy_oracle():
    items = vectors(40)
    found = nearest_tracks(items, items, 5)
    unit = items.matrix / np.linalg.norm(items.matrix, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    for row, track in enumerate(items.ids):
        expected = [items.ids[j] for j in np.argsort(-cosine[row], kind="stable")[:5]]
        assert [t for t, _ in found[track]] == expected
        assert [s for _, s in found[track]] == pytest.approx(sorted(cosine[row], reverse=True)[:5], abs=1e-5)


def test_incremental_update_equals_a_full_recompute():
    everything = vectors(60, seed=1)
    known = ItemVectors(everything.ids[:50], everything.matrix[:50])
    previous = ranked_table(nearest_tracks(known, known, 6), "track_id", "similar_id")
    merged = merge_similar(previous, everything, 6)
    full = ranked_table(nearest_tracks(everything, everything, 6), "track_id", "similar_id")
    assert merged is not None
    assert merged.select("track_id", "rank", "similar_id").equals(full.select("track_id", "rank", "similar_id"))
    assert np.allclose(merged["score"].to_numpy(), full["score"].to_numpy(), atol=1e-5)


def test_a_changed_catalog_forces_a_full_recompute():
    everything = vectors(30, seed=2)
    previous = ranked_table(nearest_tracks(everything, everything, 4), "track_id", "similar_id")
    fewer = ItemVectors(everything.ids[1:], everything.matrix[1:])  # a known track disappeared
    assert merge_similar(previous, fewer, 4) is None
    assert merge_similar(previous, everything, 8) is None  # longer lists asked for
    assert merge_similar(previous, everything, 4).equals(previous)  # nothing new: unchanged


@pytest.mark.slow
def test_release_answers_the_cli_and_is_replaced_when_a_batch_arrives(tmp_path, capsys):
    folder = tmp_path / "music"
    interactions = make_folder_catalog(folder)
    tags = {i: "low; bass; drone" if i < 3 else "high; bright; whistle" for i in range(6)}
    (tmp_path / "metadata.csv").write_text("audio_path,tags\n" + "".join(
        f"{batch}/tone{i}.wav,{tags[i]}\n" for batch in ("b000", "b001") for i in range(6)))
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({
        "name": "serve", "storage": "out",
        "catalog": {"kind": "folder", "folder": "music", "interactions": str(interactions),
                    "metadata_csv": str(tmp_path / "metadata.csv")},
        "backbones": {"random": {"dim": 8}, "handcrafted": {}}, "recommenders": {"knn": {}},
        "baselines": ["popularity"], "studies": ["hot", "text_search"],
        "serve": {"recommender": "knn", "backbone": "handcrafted", "k": 5}}))
    experiment = load_experiment(path)
    instance = dg.DagsterInstance.ephemeral()
    run_experiment(experiment, instance, say=lambda _: None)
    first = current_release(experiment.storage)
    release = load_current(experiment.storage)
    assert release.manifest["recommender"] == "knn" and release.manifest["similar"] == "handcrafted"

    assert main(["recommend", "u00", "-k", "3", "--experiment", str(path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 3 and lines[0].startswith("  1.")
    expected = [hit.track_id for hit in release.recommend("u00", 3)]
    assert [line.rsplit("(", 1)[1].split(")")[0] for line in lines] == expected

    assert main(["recommend", "u00x", "--experiment", str(path)]) == 2
    assert "unknown user 'u00x'; closest known: u00," in capsys.readouterr().err

    # tones: the low ones (tone0-2) are each other's neighbours, as are the high ones
    similar = [hit.track_id for hit in release.similar("b000/tone0", 2)]
    assert set(similar) <= {"b000/tone1", "b000/tone2", "b001/tone0", "b001/tone1", "b001/tone2"}
    assert main(["similar", "--audio", str(folder / "b001" / "tone4.wav"), "-k", "1", "--experiment", str(path)]) == 0
    out = capsys.readouterr().out  # the file's own track (or its identical twin of the other batch) comes first
    assert "1.000  tone4" in out and ("(b001/tone4)" in out or "(b000/tone4)" in out)

    served = serve_and_query(path, ["/api/recommend/u00?k=3", "/api/similar/b000/tone0?k=2",
                                    "/api/search?q=deep%20bass%20drone&k=4"], upload=folder / "b001" / "tone4.wav")
    assert [item["track_id"] for item in served[0]["items"]] == expected
    assert [item["track_id"] for item in served[1]["items"]] == similar  # ids with a slash are fine
    index = TextSearchIndex.load(release.manifest["search_index"], lean=True)  # the release's own snapshot
    assert [item["track_id"] for item in served[2]["items"]] == [t for t, _ in index.search("deep bass drone", 4)]
    assert all(int(item["track_id"][-1]) < 3 for item in served[2]["items"])  # low tones only
    nearest = served[3]["items"][0]  # the uploaded file: its own track (or its twin) first, as from the CLI
    assert nearest["track_id"] in ("b001/tone4", "b000/tone4") and nearest["score"] == pytest.approx(1.0, abs=1e-4)

    write_tone(folder / "b002" / "tone0.wav", 330.0)
    run_experiment(experiment, instance, say=lambda _: None)
    second = current_release(experiment.storage)
    assert second != first and second.exists()
    table = pl.read_parquet(second / "similar_tracks.parquet")
    assert "b002/tone0" in set(table["track_id"]) and table.filter(pl.col("track_id") == "b002/tone0").height == 5


def serve_and_query(experiment_file, paths: list[str], upload=None) -> list[dict]:
    """Start `musicrec serve` on a free port for the experiment, GET each path (then POST the audio file
    `upload` to /api/similar?k=1 when given), stop it; the JSON bodies."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--experiment", str(experiment_file),
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        bodies = [json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=30).read()) for p in paths]
        if upload is not None:
            boundary = "musicrec-test"
            data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{upload.name}\""
                    f"\r\n\r\n").encode() + upload.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/similar?k=1", data=data, method="POST",
                                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            bodies.append(json.loads(urllib.request.urlopen(request, timeout=60).read()))
        return bodies
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_lookups_without_a_release_explain_what_to_run(tmp_path, capsys):
    assert main(["recommend", "u00", "--storage", str(tmp_path)]) == 2
    assert "no serving release yet; run `musicrec run <experiment>`" in capsys.readouterr().err


def test_k_is_bounded(capsys):
    with pytest.raises(SystemExit):
        main(["recommend", "u00", "-k", "0"])
    assert "k must be between 1 and 200" in capsys.readouterr().err
