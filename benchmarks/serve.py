"""HTTP serving latency: concurrent clients against the real server (`serving.api.run_server` in a subprocess),
once at steady state and once with a new release published halfway through (the hot swap).

The release is synthetic unless `--storage` names a storage folder that already has one: `--tracks` tracks with
random tags, `--users` users with 20 plays each, top `--k` lists, random 92-dimensional vectors (the handcrafted
backbone's width, so that the upload endpoint embeds a real short WAV with the handcrafted backbone and searches
those vectors), similar tracks by cosine over them, and a text search index (bundled all-MiniLM model).

Each client is a process with one keep-alive connection, sending requests back to back for `--seconds`:
recommend and similar-by-id (40% each), search (20%), and about 1 in 100 requests an audio upload. Printed per
phase and endpoint: requests, errors, p50 and p99 latency (ms), beside the goals (recommend and similar p99 <
20 ms, search p99 < 50 ms); for the swap phase also when the new release was first answered.

`--search-precision` is the server's (`musicrec serve --search-precision`): auto (bfloat16 on CPUs that multiply it
natively, else float32), float32 or bfloat16.

Usage: .venv/bin/python benchmarks/serve.py [--storage DIR] [--tracks 5000] [--users 2000] [--k 50]
       [--clients 8] [--seconds 30] [--seed 0] [--endpoints recommend similar search upload]
       [--search-precision auto|float32|bfloat16]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
DIM = 92  # the handcrafted backbone's vector length
CLIP_SECONDS = 5.0  # length of the uploaded WAV, seconds
MIX = {"recommend": 0.4, "similar": 0.4, "search": 0.19, "upload": 0.01}  # share of requests per endpoint
GOALS_MS = {"recommend": 20.0, "similar": 20.0, "search": 50.0}  # p99 goals, ms
QUERIES = ["calm piano", "upbeat electronic dance", "sad acoustic guitar", "heavy metal riff", "jazz saxophone solo",
           "ambient drone for sleep", "happy pop with female vocals", "lofi hip hop beats", "string quartet",
           "fast drums and bass"]
TAGS = ["piano", "guitar", "electronic", "ambient", "rock", "metal", "jazz", "pop", "hip hop", "classical", "folk",
        "calm", "energetic", "sad", "happy", "dark", "vocals", "instrumental", "drums", "strings", "synth", "lofi"]
BOUNDARY = "musicrec-bench"


def write_clip(path: Path, seed: int) -> Path:
    """A short noisy chord, mono 22,050 Hz WAV (what the upload endpoint decodes)."""
    import numpy as np
    import soundfile as sf

    rate = 22050
    t = np.arange(int(CLIP_SECONDS * rate)) / rate
    wave = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220, 277, 330))
    wave = wave + 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), rate)
    return path


def synthetic_release(storage: Path, work: Path, n_tracks: int, n_users: int, k: int, seed: int) -> None:
    """Publish a synthetic release into `storage` (audio root and search index under `work`)."""
    from datetime import datetime, timedelta

    import numpy as np
    import polars as pl

    from catalog.io import ItemVectors
    from recommenders.index import VectorIndex
    from recommenders.text_search import build_search_index
    from serving.snapshot import publish_release

    rng = np.random.default_rng(seed)
    ids = [f"t{i:06d}" for i in range(n_tracks)]
    users = [f"u{i:06d}" for i in range(n_users)]
    tags = [sorted(rng.choice(TAGS, 3, replace=False).tolist()) for _ in ids]
    tracks = pl.DataFrame({"track_id": ids, "title": [f"Track {i}" for i in range(n_tracks)],
                           "artist_id": [f"a{i % 500:04d}" for i in range(n_tracks)],
                           "artist": [f"Artist {i % 500}" for i in range(n_tracks)],
                           "audio_path": ["clip.wav"] * n_tracks, "tags": tags,
                           "caption": [f"A {', '.join(t)} track." for t in tags]},
                          schema_overrides={"tags": pl.List(pl.String)})
    matrix = rng.standard_normal((n_tracks, DIM)).astype(np.float32)
    index = VectorIndex(ids, matrix, normalize=True)
    neighbours, scores = index.search(matrix, k, exclude=[[i] for i in ids])
    similar = pl.DataFrame({"track_id": np.repeat(ids, k), "rank": np.tile(np.arange(1, k + 1), n_tracks),
                            "similar_id": [s for row in neighbours for s in row], "score": scores.ravel()})
    picks = np.argsort(rng.random((n_users, n_tracks)), axis=1)[:, : k + 20]  # k recommended + 20 played
    recommendations = pl.DataFrame({
        "user_id": np.repeat(users, k), "rank": np.tile(np.arange(1, k + 1), n_users),
        "track_id": np.asarray(ids)[picks[:, :k]].ravel(), "score": np.tile(np.linspace(1, 0.5, k), n_users)})
    start = datetime(2024, 1, 1)
    histories = pl.DataFrame({"user_id": np.repeat(users, 20), "track_id": np.asarray(ids)[picks[:, k:]].ravel(),
                              "timestamp": [start + timedelta(hours=h) for h in range(20)] * n_users})
    write_clip(work / "audio" / "clip.wav", seed)
    search = build_search_index(tracks, None, work / "search")
    publish_release(storage, {"recommendations": recommendations, "similar_tracks": similar,
                              "tracks": tracks.drop("caption"), "histories": histories},
                    ItemVectors(ids, matrix),
                    {"experiment": "serve-benchmark", "recommender": "random", "backbone": "random", "k": k,
                     "similar": "random",
                     "similar_backbone": {"name": "handcrafted", "options": {}, "module": "embedders.handcrafted"},
                     "audio_root": str(work / "audio")}, search_index=search)


def republish(storage: Path) -> str:
    """Publish a copy of the live release (tables, vectors, manifest) as a new release; returns its name."""
    import polars as pl

    from catalog.io import read_embeddings
    from serving.snapshot import OPTIONAL_TABLES, TABLES, current_release, publish_release

    folder = current_release(storage)
    tables = {name: pl.read_parquet(folder / f"{name}.parquet") for name in TABLES + OPTIONAL_TABLES
              if (folder / f"{name}.parquet").exists()}
    vectors = read_embeddings(folder / "vectors.parquet") if (folder / "vectors.parquet").exists() else None
    manifest = json.loads((folder / "manifest.json").read_text())
    search_index = manifest.get("search_index")
    manifest = {k: v for k, v in manifest.items() if k not in ("release", "created", "search_index")}
    return publish_release(storage, tables, vectors, manifest, search_index=search_index).name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(connection: http.client.HTTPConnection, endpoint: str, rng: random.Random, users: list[str],
            tracks: list[str], upload: bytes) -> tuple[int, dict]:
    """One request of `endpoint` with random arguments: (status, JSON body)."""
    if endpoint == "upload":
        connection.request("POST", "/api/similar?k=10", body=upload,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    else:
        path = {"recommend": lambda: f"/api/recommend/{rng.choice(users)}?k=10",
                "similar": lambda: f"/api/similar/{rng.choice(tracks)}?k=10",
                "search": lambda: f"/api/search?q={quote(rng.choice(QUERIES))}&k=10"}[endpoint]()
        connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def client(base_port: int, until: float, seed: int, users: list[str], tracks: list[str], upload: bytes,
           mix: dict[str, float]) -> list[tuple[str, float, float, str | None, str | None]]:
    """Runs in a client process: requests back to back until wall-clock `until` (epoch seconds). Returns
    (endpoint, start time (epoch s), latency ms, error or None, release name or None) per request."""
    rng = random.Random(seed)
    endpoints, weights = list(mix), list(mix.values())
    connection = http.client.HTTPConnection("127.0.0.1", base_port, timeout=60)
    log = []
    while (started := time.time()) < until:
        endpoint = rng.choices(endpoints, weights)[0]
        tick = time.perf_counter()
        try:
            status, body = request(connection, endpoint, rng, users, tracks, upload)
            error = None if status == 200 else f"{status}: {body.get('error')}"
            release = body.get("release")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error, release = f"{type(exc).__name__}: {exc}", None
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", base_port, timeout=60)
        log.append((endpoint, started, (time.perf_counter() - tick) * 1000, error, release))
    connection.close()
    return log


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def report(phase: str, log: list[tuple], mix: dict[str, float]) -> None:
    for endpoint in mix:
        rows = [r for r in log if r[0] == endpoint]
        latencies = [r[2] for r in rows if r[3] is None]
        p99 = percentile(latencies, 99)
        goal = GOALS_MS.get(endpoint)
        verdict = "" if goal is None else f"p99 < {goal:.0f} ms: {'ok' if p99 < goal else 'MISSED'}"
        print(f"{phase:<7}| {endpoint:<10}| {len(rows):>8} | {sum(r[3] is not None for r in rows):>6} | "
              f"{percentile(latencies, 50):>6.1f} | {p99:>7.1f} | {verdict}")
    errors = [r[3] for r in log if r[3] is not None]
    for error in sorted(set(errors))[:3]:
        print(f"        error sample: {error}")


def run_phase(port: int, args: argparse.Namespace, users: list[str], tracks: list[str], upload: bytes,
              mix: dict[str, float], storage: Path | None = None) -> tuple[list[tuple], str | None, float | None]:
    """`args.clients` client processes for `args.seconds`; with `storage`, a new release is published halfway.
    Returns (all requests, new release name or None, epoch time of the publish or None)."""
    until = time.time() + args.seconds
    with ProcessPoolExecutor(args.clients, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(client, port, until, args.seed + n, users, tracks, upload, mix)
                   for n in range(args.clients)]
        published, published_at = None, None
        if storage is not None:
            time.sleep(max(0.0, until - time.time() - args.seconds / 2))
            published_at = time.time()
            published = republish(storage)
        return [row for f in futures for row in f.result()], published, published_at


def main() -> None:
    from recommenders.query_encoder import SERVER_PRECISIONS, resolve_precision

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", type=Path, help="a storage folder; reused when it has a release, else built")
    parser.add_argument("--tracks", type=int, default=5000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--endpoints", nargs="+", choices=list(MIX), default=list(MIX),
                        help="the endpoints in the mix (their shares renormalised)")
    parser.add_argument("--search-precision", choices=SERVER_PRECISIONS, default="auto",
                        help="the server's query encoder precision (`musicrec serve --search-precision`)")
    args = parser.parse_args()

    from serving.snapshot import load_current, serving_root

    scratch = tempfile.TemporaryDirectory(prefix="musicrec_serve_")
    work = args.storage / "benchmark" if args.storage else Path(scratch.name)  # audio, search index, server log
    storage = args.storage or work / "storage"
    if (serving_root(storage) / "CURRENT").is_file():
        print(f"reusing the release in {storage}")
    else:
        started = time.perf_counter()
        synthetic_release(storage, work, args.tracks, args.users, args.k, args.seed)
        print(f"built a synthetic release ({args.tracks} tracks, {args.users} users, k {args.k}) "
              f"in {time.perf_counter() - started:.0f} s")
    release = load_current(storage)
    users, tracks = release.user_ids, list(release.track_rows)
    clip = (work / "audio" / "clip.wav") if (work / "audio" / "clip.wav").exists() else write_clip(work / "clip.wav", 0)
    upload = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"clip.wav\"\r\n\r\n".encode()
              + clip.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode())
    del release

    port = free_port()
    server_log = work / "server.log"
    code = ("import sys; from serving.api import run_server; "
            "run_server(sys.argv[1], port=int(sys.argv[2]), search_precision=sys.argv[3])")
    with open(server_log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-c", code, str(storage), str(port), args.search_precision],
                                  cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        mix = {endpoint: MIX[endpoint] for endpoint in args.endpoints}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        deadline = time.time() + 120
        while True:  # wait for the server, then warm every endpoint (loads the text model and the backbone)
            try:
                warm = {e: request(connection, e, random.Random(0), users, tracks, upload)[0] for e in mix}
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"server did not start:\n{server_log.read_text()[-3000:]}") from None
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                time.sleep(0.5)
        for endpoint, status in warm.items():
            if status != 200:
                print(f"{endpoint}: skipped (warm-up answered {status})")
                del mix[endpoint]
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"{args.clients} clients x {args.seconds:.0f} s per phase; search in {args.search_precision} "
              f"({resolve_precision(args.search_precision)} here)")
        print(f"{'phase':<7}| {'endpoint':<10}| requests | errors | p50 ms |  p99 ms | goal")
        log, _, _ = run_phase(port, args, users, tracks, upload, mix)
        report("steady", log, mix)
        log, new_release, published_at = run_phase(port, args, users, tracks, upload, mix, storage)
        report("swap", log, mix)
        first_new = min((r[1] for r in log if r[4] == new_release), default=None)
        if first_new is None:
            print(f"swap: release {new_release} was never answered within the phase")
        else:
            print(f"swap: release {new_release} published; first answered {first_new - published_at:.2f} s later; "
                  f"{sum(r[3] is not None for r in log)} errors during the phase")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        scratch.cleanup()


if __name__ == "__main__":
    main()
