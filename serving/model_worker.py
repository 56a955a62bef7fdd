"""Model calls of the HTTP API (text search, embedding an uploaded file) in worker processes of their own.

Encoding a query or an audio file is CPU work plus Python overhead; in the server's process it would hold the
GIL and stall every lookup on the event loop behind it. Each kind of call gets one single-process pool: the
worker loads a release's search index or audio backbone once, keeps the last `KEEP_LOADED` of them (the live
release and the one being swapped in), and runs torch on `WORKER_THREADS` thread(s) so the server keeps a core.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

KEEP_LOADED = 2
WORKER_THREADS = 1

_loaded: OrderedDict[str, object] = OrderedDict()  # per worker process: key -> search index or backbone


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _cached(key: str, load):
    """The object `load()` made for `key` in this worker, loaded once; the oldest beyond KEEP_LOADED dropped."""
    if key in _loaded:
        _loaded.move_to_end(key)
    else:
        _loaded[key] = load()
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)
    return _loaded[key]


def _search(folder: str, text: str, k: int) -> list[tuple[str, float]]:
    from recommenders.text_search import TextSearchIndex

    return _cached(f"search:{folder}", lambda: TextSearchIndex.load(folder)).search(text, k)


def _embed(backbone_spec: str, path: str) -> np.ndarray:
    from serving.audio_query import create_backbone, embed_with

    manifest = {"similar_backbone": json.loads(backbone_spec)}
    return embed_with(_cached(f"backbone:{backbone_spec}", lambda: create_backbone(manifest)), path)


class ModelWorkers:
    """Two single-process pools, started on first use: `search` and `embed` return futures."""

    def __init__(self, threads: int = WORKER_THREADS) -> None:
        context = get_context("spawn")  # a fork of a threaded server is unsafe
        self._pools = {kind: ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker,
                                                 initargs=(threads,)) for kind in ("search", "embed")}

    def search(self, index_folder: str | Path, text: str, k: int) -> Future:
        """Future of [(track_id, cosine score)], best first, from the search index in `index_folder`."""
        return self._pools["search"].submit(_search, str(index_folder), text, k)

    def embed(self, backbone_spec: dict, path: str | Path) -> Future:
        """Future of the float32 (dim,) vector of an audio file under the backbone `backbone_spec` (a release
        manifest's `similar_backbone`: name and options); AudioDecodeError (ValueError) for an undecodable
        file, LookupError for a backbone that reads no audio."""
        return self._pools["embed"].submit(_embed, json.dumps(backbone_spec, sort_keys=True), str(path))

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
