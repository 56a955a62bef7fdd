"""Model calls of the HTTP API (text search, embedding an uploaded file) in worker processes of their own.

Encoding a query or an audio file is CPU work plus Python overhead; in the server's process it would hold the
GIL and stall every lookup on the event loop behind it. Each kind of call gets one single-process pool: the
worker loads a release's search index or audio backbone once, keeps the last `KEEP_LOADED` of them (the live
release and the one being swapped in), and runs torch on `WORKER_THREADS` thread(s) so the server keeps a core.
"""
from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

KEEP_LOADED = 2
WORKER_THREADS = 1

_loaded: OrderedDict[str, object] = OrderedDict()  # per worker process: key -> search index or backbone


def _start_worker(threads: int) -> None:
    """Cap the worker's compute threads without importing torch (the numpy query encoder never needs it):
    the BLAS numpy already loaded through threadpoolctl, torch (if a backbone imports it later) and any other
    OpenMP library through the environment they read at import."""
    from threadpoolctl import threadpool_limits

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    threadpool_limits(threads)


def _cached(key: str, load):
    """The object `load()` made for `key` in this worker, loaded once; the oldest beyond KEEP_LOADED dropped."""
    if key in _loaded:
        _loaded.move_to_end(key)
    else:
        _loaded[key] = load()
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)
    return _loaded[key]


def _search(folder: str, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
    from recommenders.text_search import TextSearchIndex

    return _cached(f"search:{folder}", lambda: TextSearchIndex.load(folder, lean=True)).search_many(texts, k)


def _embed(backbone_spec: str, path: str) -> np.ndarray:
    from serving.audio_query import create_backbone, embed_with

    manifest = {"similar_backbone": json.loads(backbone_spec)}
    return embed_with(_cached(f"backbone:{backbone_spec}", lambda: create_backbone(manifest)), path)


class SearchBatcher:
    """Dynamic batching of the search worker's queries, in the server's event loop: while a batch is being
    encoded, arriving queries wait; when it returns, all of them (up to `max_batch`, same index and k) go as the
    next batch. Encoding 8 short queries together costs little more than one, so under concurrent load a query
    waits for at most about one batch instead of for every query ahead of it."""

    def __init__(self, workers: "ModelWorkers", max_batch: int = 32) -> None:
        self.workers, self.max_batch = workers, max_batch
        self._waiting: list[tuple[str, str, int, asyncio.Future]] = []
        self._busy = False

    async def search(self, index_folder: str, text: str, k: int) -> list[tuple[str, float]]:
        """[(track_id, cosine score)] for `text`, best first."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((index_folder, text, k, future))
        if not self._busy:
            self._launch()
        return await future

    def _launch(self) -> None:
        folder, _, k, _ = self._waiting[0]
        batch = [w for w in self._waiting if w[0] == folder and w[2] == k][: self.max_batch]
        self._waiting = [w for w in self._waiting if w not in batch]
        self._busy = True
        loop = asyncio.get_running_loop()
        done = self.workers.search(folder, [text for _, text, _, _ in batch], k)
        done.add_done_callback(lambda result: loop.call_soon_threadsafe(self._finish, batch, result))

    def _finish(self, batch: list, result: Future) -> None:
        self._busy = False
        try:
            lists = result.result()
        except Exception as error:  # noqa: BLE001 — every query of the batch gets the worker's error
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for (*_, future), hits in zip(batch, lists):
                if not future.done():
                    future.set_result(hits)
        if self._waiting:
            self._launch()


class ModelWorkers:
    """Two single-process pools, started on first use: `search` and `embed` return futures."""

    def __init__(self, threads: int = WORKER_THREADS) -> None:
        context = get_context("spawn")  # a fork of a threaded server is unsafe
        self._pools = {kind: ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker,
                                                 initargs=(threads,)) for kind in ("search", "embed")}

    def search(self, index_folder: str | Path, texts: list[str], k: int) -> Future:
        """Future of one [(track_id, cosine score)] list per text, best first, from the search index in
        `index_folder` (the texts are encoded as one batch)."""
        return self._pools["search"].submit(_search, str(index_folder), list(texts), k)

    def embed(self, backbone_spec: dict, path: str | Path) -> Future:
        """Future of the float32 (dim,) vector of an audio file under the backbone `backbone_spec` (a release
        manifest's `similar_backbone`: name and options); AudioDecodeError (ValueError) for an undecodable
        file, LookupError for a backbone that reads no audio."""
        return self._pools["embed"].submit(_embed, json.dumps(backbone_spec, sort_keys=True), str(path))

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
