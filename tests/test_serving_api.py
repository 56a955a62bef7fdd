"""The HTTP API end to end: a tiny release (six real WAV tracks, handcrafted vectors, a text search index)
published with `publish_release`, served by `run_server` in a subprocess, and checked over HTTP against the
tables: lookups, similar-by-upload, search, input checks and JSON errors, the audio folder's boundary, the
OpenAPI docs, and a hot swap under load. Helpers here are shared with test_serving_page.py."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from catalog.io import atomic_path
from embedders.handcrafted import HandcraftedEmbedder
from embedders.runner import embed_tracks
from recommenders.index import VectorIndex
from recommenders.text_search import build_search_index
from serving.snapshot import publish_release

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 22050  # Hz of the test WAVs
SERVER_TIMEOUT_S = 120  # the server imports faiss, librosa & co.: slow on a loaded 2-core machine
K = 4  # list length of the test release
MAX_UPLOAD_BYTES = 20 * 2**20  # create_app's default, which run_server uses

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Trying to estimate tuning:UserWarning")]

# track id, title, artist id, tags, caption, sound
TRACKS = [
    ("t01", "Quiet Keys", "a1", ["piano", "calm", "slow"], "A gentle solo piano ballad.", "soft"),
    ("t02", "Night Drive", "a1", ["synthwave", "electronic", "retro"], "Pulsing synthesizers at night.", "saw"),
    ("t03", "Thunder", "a2", ["metal", "distorted guitar", "loud"], "A heavy metal riff.", "noise"),
    ("t04", "Rain Loop", "a2", ["ambient", "drone", "rain"], "A quiet rainy drone.", "hiss"),
    ("t05", "Clicks", "a3", ["percussion", "drums"], "Dry drum clicks.", "clicks"),
    ("t06", "High Whistle", "a3", ["flute", "folk"], "A high folk flute melody.", "whistle"),
]
ARTISTS = {"a1": "Ada", "a2": "Bo", "a3": "Cy"}
HISTORIES = {"u1": ["t01", "t02", "t03"], "u2": ["t04", "t05"]}
RECOMMENDATIONS = {"u1": ["t04", "t06", "t05", "t02"], "u2": ["t01", "t06", "t02", "t03"]}


def _sound(kind: str, seconds: float = 2.0) -> np.ndarray:
    """A distinct mono float32 signal per kind, at SAMPLE_RATE."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(len(kind))
    signals = {
        "soft": 0.3 * np.sin(2 * np.pi * 262 * t) + 0.1 * np.sin(2 * np.pi * 524 * t),
        "saw": 0.4 * (2 * ((110 * t) % 1.0) - 1),
        "noise": np.clip(2.0 * rng.standard_normal(t.size), -0.9, 0.9),
        "hiss": 0.05 * rng.standard_normal(t.size),
        "clicks": np.where((t * 4) % 1.0 < 0.01, 0.9, 0.0),
        "whistle": 0.5 * np.sin(2 * np.pi * 1760 * t),
    }
    return signals[kind].astype(np.float32)


def write_catalog(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, Path]:
    """WAVs under `folder/audio` and the tables describing them: (tracks, artists, audio root)."""
    audio_root = folder / "audio"
    for track_id, *_, kind in TRACKS:
        (audio_root / "wav").mkdir(parents=True, exist_ok=True)
        sf.write(str(audio_root / "wav" / f"{track_id}.wav"), _sound(kind), SAMPLE_RATE)
    tracks = pl.DataFrame(
        [{"track_id": i, "title": title, "artist_id": a, "artist": ARTISTS[a], "audio_path": f"wav/{i}.wav",
          "tags": tags, "caption": caption} for i, title, a, tags, caption, _ in TRACKS],
        schema_overrides={"tags": pl.List(pl.String)})
    artists = pl.DataFrame({"artist_id": list(ARTISTS), "name": list(ARTISTS.values())})
    return tracks, artists, audio_root


def release_tables(tracks: pl.DataFrame, vectors_ids: list[str], matrix: np.ndarray,
                   recommendations: dict[str, list[str]]) -> dict[str, pl.DataFrame]:
    """The four serving tables: recommendations as given (score 1, 0.9, ...), similar tracks by cosine."""
    index = VectorIndex(vectors_ids, matrix, normalize=True)
    neighbours, scores = index.search(matrix, K, exclude=[[i] for i in vectors_ids])
    similar = [{"track_id": t, "rank": r + 1, "similar_id": s, "score": float(scores[row, r])}
               for row, t in enumerate(vectors_ids) for r, s in enumerate(neighbours[row])]
    start = datetime(2024, 1, 1)
    return {
        "recommendations": pl.DataFrame([{"user_id": u, "rank": r + 1, "track_id": t, "score": 1.0 - r / 10}
                                         for u, ids in recommendations.items() for r, t in enumerate(ids)]),
        "similar_tracks": pl.DataFrame(similar),
        "tracks": tracks.select("track_id", "title", "artist_id", "artist", "audio_path", "tags"),
        "histories": pl.DataFrame([{"user_id": u, "track_id": t, "timestamp": start + timedelta(hours=n)}
                                   for u, ids in HISTORIES.items() for n, t in enumerate(ids)]),
    }


def manifest(audio_root: Path | None, similar_backbone: bool = True) -> dict:
    return {"experiment": "serving-test", "recommender": "toy", "backbone": "handcrafted", "k": K,
            "similar": "handcrafted",
            "similar_backbone": {"name": "handcrafted", "options": {}, "module": "embedders.handcrafted"}
            if similar_backbone else None,
            "audio_root": str(audio_root) if audio_root else None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(storage: Path, log: Path) -> Iterator[str]:
    """`run_server(storage)` in a subprocess on a free port; yields its base URL once /api/health answers."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    code = "import sys; from serving.api import run_server; run_server(sys.argv[1], port=int(sys.argv[2]))"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", code, str(storage), str(port)], cwd=REPO_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(OSError):
                if get(base, "/api/health")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"server not up within {SERVER_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def get(base: str, path: str, timeout: float = 60) -> tuple[int, dict]:
    """(status, JSON body) of a GET; error statuses too."""
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def raw_get(base: str, raw_path: str) -> tuple[int, bytes]:
    """A GET whose path is sent exactly as written (no client-side normalisation of `..`)."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


BOUNDARY = "musicrec-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart_body(filename: str, data: bytes) -> bytes:
    """A multipart/form-data body holding `data` as the file field "audio"."""
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_audio(base: str, filename: str, data: bytes, k: int = K) -> tuple[int, dict]:
    """POST `data` as the multipart file field "audio" to /api/similar."""
    request = urllib.request.Request(f"{base}/api/similar?k={k}", data=multipart_body(filename, data),
                                     method="POST", headers=MULTIPART)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def publish_test_release(folder: Path) -> dict:
    """Catalog, vectors, search index and a published release under `folder`: {"storage", "audio_root",
    "tables", "name", "outside" (a file beside the audio folder, which `audio/escape.wav` links to), "folder"}."""
    tracks, artists, audio_root = write_catalog(folder)
    vectors = embed_tracks(HandcraftedEmbedder(), tracks, audio_root).vectors
    search = build_search_index(tracks, None, folder / "search", artists)
    tables = release_tables(tracks, vectors.ids, vectors.matrix, RECOMMENDATIONS)
    ids = artists["artist_id"].to_list()  # each artist's similar artists: the others, in catalog order
    tables["similar_artists"] = pl.DataFrame(
        [{"artist_id": a, "rank": r + 1, "similar_id": b, "score": 0.9 - r / 10}
         for a in ids for r, b in enumerate(x for x in ids if x != a)])
    tables["artists"] = artists
    storage = folder / "storage"
    published = publish_release(storage, tables, vectors, manifest(audio_root), search_index=search)
    outside = folder / "secret.txt"
    outside.write_text("not for the web")
    (audio_root / "escape.wav").symlink_to(outside)
    return {"storage": storage, "audio_root": audio_root, "tables": tables, "name": published.name,
            "outside": outside, "folder": folder}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict:
    return publish_test_release(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def server(release) -> Iterator[str]:
    with running_server(release["storage"], release["folder"] / "server.log") as base:
        yield base


def _table_ids(table: pl.DataFrame, key: str, value: str, item: str) -> list[str]:
    return table.filter(pl.col(key) == value).sort("rank")[item].to_list()


def test_recommend_and_similar_match_the_tables(server, release):
    status, body = get(server, "/api/recommend/u1?k=3")
    assert status == 200 and body["user_id"] == "u1" and body["release"] == release["name"]
    assert [i["track_id"] for i in body["items"]] == RECOMMENDATIONS["u1"][:3]
    first = body["items"][0]
    assert first == {"track_id": "t04", "score": 1.0, "title": "Rain Loop", "artist": "Bo",
                     "audio_path": "wav/t04.wav", "tags": ["ambient", "drone", "rain"]}
    assert len(get(server, "/api/recommend/u2?k=200")[1]["items"]) == K  # at most the release's k

    similar = release["tables"]["similar_tracks"]
    for track_id in ("t01", "t05"):
        status, body = get(server, f"/api/similar/{track_id}?k={K}")
        assert status == 200 and body["track_id"] == track_id and body["release"] == release["name"]
        assert [i["track_id"] for i in body["items"]] == _table_ids(similar, "track_id", track_id, "similar_id")
        expected = similar.filter(pl.col("track_id") == track_id).sort("rank")["score"].to_list()
        assert [i["score"] for i in body["items"]] == pytest.approx(expected, abs=1e-5)


def test_similar_artists_match_the_table_and_unknown_artists_get_the_closest(server, release):
    table = release["tables"]["similar_artists"]
    first = table["artist_id"][0]
    status, body = get(server, f"/api/similar_artists/{first}?k=1")
    assert status == 200 and body["artist_id"] == first and body["release"] == release["name"]
    top = table.filter((pl.col("artist_id") == first) & (pl.col("rank") == 1)).row(0, named=True)
    names = dict(release["tables"]["artists"].iter_rows())
    assert body["items"] == [{"artist_id": top["similar_id"], "name": names[top["similar_id"]], "score": 0.9}]
    status, body = get(server, f"/api/similar_artists/{first}zz")
    assert status == 404 and body["error"] == f"unknown artist '{first}zz'; closest known: {first}"


def test_users_history_and_health(server, release):
    assert get(server, "/api/users") == (200, {"users": ["u1", "u2"]})
    assert get(server, "/api/users?prefix=u2&limit=5") == (200, {"users": ["u2"]})
    status, body = get(server, "/api/users/u1/history")
    assert status == 200 and [i["track_id"] for i in body["items"]] == HISTORIES["u1"]
    status, body = get(server, "/api/health")
    assert status == 200 and body["release"] == release["name"] and body["recommender"] == "toy"


def test_similar_by_uploaded_audio_finds_the_track(server, release):
    for track_id in ("t02", "t06"):
        data = (release["audio_root"] / "wav" / f"{track_id}.wav").read_bytes()
        status, body = post_audio(server, f"copy of {track_id}.wav", data)
        assert status == 200, body
        assert body["release"] == release["name"] and len(body["items"]) == K
        assert body["items"][0]["track_id"] == track_id
        assert body["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_cli_similar_by_audio_finds_the_track_without_torch(release):
    """`musicrec similar --audio`: the file's nearest track is itself, and the command imports neither torch nor
    transformers (handcrafted backbone; the neighbours come from faiss straight)."""
    path = release["audio_root"] / "wav" / "t06.wav"
    code = ("import sys; from pipelines.cli import main\n"
            f"sys.argv = ['musicrec', 'similar', '--audio', {str(path)!r}, '--storage', {str(release['storage'])!r},"
            " '-k', '3']\n"
            "try:\n    main()\nfinally:\n"
            "    print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "HEAVY []"
    results = [line for line in lines if line.strip().startswith(("1.", "2.", "3."))]
    assert len(results) == 3 and "(t06)" in results[0], run.stdout


def test_undecodable_and_oversized_uploads(server):
    status, body = post_audio(server, "noise.wav", np.random.default_rng(0).bytes(4096))
    assert status == 422 and "cannot decode audio" in body["error"] and "noise.wav" in body["error"]
    assert "musicrec-upload-" not in body["error"]  # the server's temp file is not named
    host, port = urllib.parse.urlsplit(server).netloc.split(":")
    body = multipart_body("big.wav", b"\0" * MAX_UPLOAD_BYTES)
    # declared too large: refused before the body is read (the client sends only the headers)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/similar")
    for name, value in {**MULTIPART, "Content-Length": str(len(body))}.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and str(MAX_UPLOAD_BYTES) in json.loads(response.read())["error"]
    connection.close()
    # chunked, no declared length: refused once the bytes received pass the limit
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (body[i : i + 2**16] for i in range(0, len(body), 2**16))
    connection.request("POST", "/api/similar", body=chunks, headers=MULTIPART, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and str(MAX_UPLOAD_BYTES) in json.loads(response.read())["error"]
    connection.close()
    assert get(server, "/api/health")[0] == 200  # still serving


def test_search(server, release):
    status, body = get(server, "/api/search?q=" + urllib.parse.quote("calm piano music") + "&k=3")
    assert status == 200 and body["query"] == "calm piano music" and body["release"] == release["name"]
    assert len(body["items"]) == 3 and body["items"][0]["track_id"] == "t01"
    assert body["items"][0]["audio_path"] == "wav/t01.wav" and body["items"][0]["artist"] == "Ada"
    assert get(server, "/api/search?q=" + urllib.parse.quote("heavy distorted metal") + "&k=1")[1]["items"][0][
        "track_id"] == "t03"


def test_concurrent_searches_are_batched_without_mixing_answers(server, release):
    """Queries sent at once reach the search worker together (`SearchBatcher`); each must get its own answer:
    the same lists as the same queries sent one at a time."""
    queries = ["calm piano music", "heavy distorted metal", "rain ambient drone", "jazz", "bright synth pop",
               "acoustic guitar", "slow strings", "drums"] * 3
    alone = {q: get(server, f"/api/search?q={urllib.parse.quote(q)}&k=4")[1]["items"] for q in set(queries)}
    with ThreadPoolExecutor(len(queries)) as pool:
        answers = list(pool.map(lambda q: get(server, f"/api/search?q={urllib.parse.quote(q)}&k=4"), queries))
    assert all(status == 200 for status, _ in answers)
    assert [body["query"] for _, body in answers] == queries
    for query, (_, body) in zip(queries, answers):  # a padded batch may move a score in its last digits
        assert [i["track_id"] for i in body["items"]] == [i["track_id"] for i in alone[query]]
        assert [i["score"] for i in body["items"]] == pytest.approx([i["score"] for i in alone[query]], abs=1e-5)


def test_unknown_ids_name_the_closest(server):
    status, body = get(server, "/api/recommend/u11")
    assert status == 404 and "unknown user 'u11'" in body["error"] and "u1" in body["error"]
    status, body = get(server, "/api/similar/t011")
    assert status == 404 and "t01" in body["error"]
    status, body = get(server, "/api/users/nobody/history")
    assert status == 404 and "unknown user" in body["error"]


@pytest.mark.parametrize("path", [
    "/api/recommend/u1?k=0", "/api/recommend/u1?k=201", "/api/recommend/u1?k=ten", "/api/similar/t01?k=-1",
    "/api/search?q=&k=5", "/api/search?q=%20%20", "/api/search?q=" + "x" * 501, "/api/search",
    "/api/recommend/" + "u" * 201, "/api/users?limit=0",
])
def test_bad_input_is_422_json(server, path):
    status, body = get(server, path)
    assert status == 422 and isinstance(body["error"], str) and body["error"], body


def test_errors_are_json(server):
    status, body = get(server, "/api/nothing-here")
    assert status == 404 and "error" in body
    request = urllib.request.Request(f"{server}/api/recommend/u1", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 405 and "error" in json.loads(error.value.read())


def test_audio_is_served_only_from_the_audio_folder(server, release):
    status, data = raw_get(server, "/audio/wav/t01.wav")
    assert status == 200 and data == (release["audio_root"] / "wav" / "t01.wav").read_bytes()
    outside = release["outside"]
    for path in ("/audio/../secret.txt", "/audio/wav/../../secret.txt", "/audio/%2e%2e/secret.txt",
                 f"/audio/{outside}", f"/audio//{outside}", "/audio/escape.wav", "/audio//etc/passwd"):
        status, data = raw_get(server, path)
        assert status == 403, (path, status, data[:200])
        assert b"not for the web" not in data and "error" in json.loads(data)
    status, data = raw_get(server, "/audio/wav/missing.wav")
    assert status == 404 and "error" in json.loads(data)


def test_docs_and_page(server):
    status, data = raw_get(server, "/docs")
    assert status == 200 and b"swagger" in data.lower()
    status, spec = get(server, "/openapi.json")
    assert status == 200 and {"/api/recommend/{user_id}", "/api/similar", "/api/search"} <= set(spec["paths"])
    status, data = raw_get(server, "/")
    assert status == 200 and b'id="q"' in data
    assert raw_get(server, "/static/app.js")[0] == 200


def test_unexpected_error_is_json_500_and_logged(release, caplog):
    """In-process server whose release lookup raises: the client gets a JSON message, the log the traceback."""
    import uvicorn

    from serving.api import create_app

    app = create_app(release["storage"])
    app.state.live.served.release.recommend = lambda user_id, k: 1 / 0
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = get(f"http://127.0.0.1:{port}", "/api/recommend/u1")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert status == 500 and "ZeroDivisionError" in body["error"] and "Traceback" not in body["error"]
    assert any(r.name == "serving.api" and r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_hot_swap_under_load(release, tmp_path):
    """A second storage without search index or upload backbone: a new release published while two clients
    hammer /api/recommend is picked up with zero failed requests."""
    tables = release["tables"]
    storage = tmp_path / "storage"
    first = publish_release(storage, tables, None, manifest(release["audio_root"], False)).name
    with running_server(storage, tmp_path / "server.log") as base:
        assert get(base, "/api/search?q=piano")[0] == 404
        status, body = post_audio(base, "t01.wav", (release["audio_root"] / "wav" / "t01.wav").read_bytes())
        assert status == 404 and "unavailable" in body["error"]

        seen: dict[str, int] = {}
        errors: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    status, body = get(base, "/api/recommend/u1?k=3", timeout=10)
                    if status != 200:
                        errors.append(f"{status}: {body}")
                    else:
                        seen[body["release"]] = seen.get(body["release"], 0) + 1
                except OSError as exc:
                    errors.append(repr(exc))

        clients = [threading.Thread(target=hammer) for _ in range(2)]
        for client in clients:
            client.start()
        time.sleep(1.5)
        swapped = dict(tables, recommendations=pl.DataFrame(
            [{"user_id": "u1", "rank": r + 1, "track_id": t, "score": 1.0 - r / 10}
             for r, t in enumerate(["t06", "t05", "t04"])]))
        second = publish_release(storage, swapped, None, manifest(release["audio_root"], False)).name
        deadline = time.monotonic() + 15
        while second not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for client in clients:
            client.join()
        status, body = get(base, "/api/recommend/u1")
        assert status == 200 and body["release"] == second
        assert [i["track_id"] for i in body["items"]] == ["t06", "t05", "t04"]

        # CURRENT naming a release that cannot load: logged, the last good release keeps serving
        (storage / "serving" / "CURRENT").write_text("no-such-release")
        time.sleep(2.5)
        status, body = get(base, "/api/health")
        assert status == 200 and body["release"] == second
        third = publish_release(storage, tables, None, manifest(release["audio_root"], False)).name
        deadline = time.monotonic() + 15
        while get(base, "/api/health")[1]["release"] != third and time.monotonic() < deadline:
            time.sleep(0.2)
        assert get(base, "/api/health")[1]["release"] == third
    assert "no-such-release" in (tmp_path / "server.log").read_text()
    assert errors == [], errors[:5]
    assert seen.get(first, 0) > 0 and seen.get(second, 0) > 0, seen
    assert first != second


def test_a_release_keeps_its_search_index_and_a_swap_serves_the_new_one(release, tmp_path):
    """Each release holds a snapshot of the search index: rebuilding the index in place (as the search_index
    asset does) leaves the live release's searches unchanged, and the next release's searches use the rebuilt
    index (the server loads each release's own index)."""
    source = shutil.copytree(release["folder"] / "search", tmp_path / "search")
    storage = tmp_path / "storage"
    first = publish_release(storage, release["tables"], None, manifest(release["audio_root"], False),
                            search_index=source)
    snapshot = Path(json.loads((first / "manifest.json").read_text())["search_index"])
    assert snapshot == first / "search" and sorted(p.name for p in snapshot.iterdir()) == sorted(
        p.name for p in source.iterdir())
    before = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    with atomic_path(source / "config.json") as tmp:  # an in-place rewrite replaces the file
        tmp.write_text("{}")
    assert {p.name: p.read_bytes() for p in snapshot.iterdir()} == before

    query = "/api/search?q=" + urllib.parse.quote("calm piano music") + "&k=3"
    without_t01 = release["tables"]["tracks"].filter(pl.col("track_id") != "t01")
    with running_server(storage, tmp_path / "server.log") as base:
        assert get(base, query)[1]["items"][0]["track_id"] == "t01"
        build_search_index(without_t01, None, source)
        assert get(base, query)[1]["items"][0]["track_id"] == "t01"  # the live release keeps its snapshot
        second = publish_release(storage, release["tables"], None, manifest(release["audio_root"], False),
                                 search_index=source).name
        deadline = time.monotonic() + 60
        while get(base, "/api/health")[1]["release"] != second and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = get(base, query)
    assert status == 200 and body["release"] == second
    assert len(body["items"]) == 3 and "t01" not in [item["track_id"] for item in body["items"]]


def test_an_audio_query_imports_only_its_backbones_module(tmp_path):
    """The manifest names the backbone's module, so embedding one file with the handcrafted backbone loads
    neither torch nor transformers (the other backbones' libraries); the vector equals the backbone's own."""
    import soundfile as sf

    path = tmp_path / "tone.wav"
    sf.write(path, 0.3 * np.sin(np.linspace(0, 2 * np.pi * 440 * 3, 3 * 22050)).astype(np.float32), 22050)
    code = ("import json, sys; from serving.audio_query import embed_file; "
            "v = embed_file({'similar_backbone': {'name': 'handcrafted', 'module': 'embedders.handcrafted', "
            f"'options': {{}}}}}}, {str(path)!r}); "
            "print(json.dumps({'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules), "
            "'vector': v.tolist()}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    from embedders.audio import load_mono
    from embedders.handcrafted import HandcraftedEmbedder

    backbone = HandcraftedEmbedder()
    expected = backbone.embed([load_mono(path, backbone.sample_rate, 600.0)])[0]
    np.testing.assert_allclose(out["vector"], expected, rtol=1e-5, atol=1e-6)
