"""Model calls of the HTTP API (text search, embedding an uploaded file) in worker processes of their own.

Encoding a query or an audio file is CPU work plus Python overhead; in the server's process it would hold the
GIL and stall every lookup on the event loop behind it. Each kind of call gets one process (`WorkerProcess`):
it loads a release's search index or audio backbone once, keeps the last `KEEP_LOADED` of them (the live
release and the one being swapped in), and runs its compute libraries on `WORKER_THREADS` thread(s) so the
server keeps a core. The server's event loop writes each call to the worker's pipe and reads the answer when
the pipe turns readable: no executor threads stand between them, since in a busy server every thread hop waits
for the GIL (README, "Serving", has what a `ProcessPoolExecutor`'s hops cost).
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import pickle
from collections import OrderedDict, deque
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

KEEP_LOADED = 2
WORKER_THREADS = 1
EMBED_NICENESS = 10  # the upload worker's niceness: on a busy CPU, searches (interactive) run before uploads

_loaded: OrderedDict[str, object] = OrderedDict()  # per worker process: key -> search index or backbone


class WorkerDied(RuntimeError):
    """A model worker process ended while it ran a call; the next call starts a new one."""


def _start_worker(threads: int, niceness: int) -> None:
    """Lower the worker's scheduling priority by `niceness` and cap its compute threads without importing
    torch (the numpy query encoder never needs it): the BLAS numpy already loaded through threadpoolctl, torch
    (if a backbone imports it later) and any other OpenMP library through the environment they read at import."""
    from threadpoolctl import threadpool_limits

    os.nice(niceness)
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
        # What is alive now (libraries, models) leaves the cyclic GC's scans: a full collection over torch and a
        # model stalls a search for tens of ms. Reference counting still frees a dropped model.
        gc.collect()
        gc.freeze()
    return _loaded[key]


def _search(folder: str, precision: str, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
    from recommenders.query_encoder import resolve_precision
    from recommenders.text_search import TextSearchIndex

    def load() -> TextSearchIndex:  # "auto" resolved once, at load
        return TextSearchIndex.load(folder, lean=True, precision=resolve_precision(precision))

    return _cached(f"search:{folder}:{precision}", load).search_many(texts, k)


def _embed(backbone_spec: str, path: str) -> np.ndarray:
    from serving.audio_query import create_backbone, embed_with

    manifest = {"similar_backbone": json.loads(backbone_spec)}
    return embed_with(_cached(f"backbone:{backbone_spec}", lambda: create_backbone(manifest)), path)


_CALLS = {"search": _search, "embed": _embed}


def _portable(error: Exception) -> Exception:
    """`error` itself when it survives pickling, else an exception of its nearest kind the server tells apart
    (LookupError, ValueError, OSError; RuntimeError otherwise) carrying its message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 — any exception class whose constructor pickle cannot replay
        kind = next((k for k in (LookupError, ValueError, OSError) if isinstance(error, k)), RuntimeError)
        return kind(f"{type(error).__name__}: {error}")


def _worker_main(connection: Connection, threads: int, niceness: int) -> None:
    """The worker process: answer (call name, args) messages with (True, result) or (False, exception), one at
    a time, until the server closes its end of the pipe."""
    _start_worker(threads, niceness)
    while True:
        try:
            name, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply = (True, _CALLS[name](*args))
        except Exception as error:  # noqa: BLE001 — every failure goes back to the caller
            reply = (False, _portable(error))
        connection.send(reply)


class WorkerProcess:
    """One spawned worker process driven from the server's event loop. `call` queues a call and returns an
    asyncio future; one call is in flight at a time (so writing it never blocks the loop), the rest wait here.
    The process starts on the first call; if it dies, the call in flight fails with `WorkerDied` and the next
    call starts a new process. `niceness`: added to the process's nice value (lower priority). Use from the
    event loop's thread only."""

    def __init__(self, kind: str, threads: int = WORKER_THREADS, niceness: int = 0) -> None:
        self.kind, self.threads, self.niceness = kind, threads, niceness
        self._context = get_context("spawn")  # a fork of a threaded server is unsafe
        self._process = None
        self._connection: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[tuple[str, tuple, asyncio.Future]] = deque()
        self._in_flight: asyncio.Future | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker process's id; None before the first call and after it ended."""
        return self._process.pid if self._process is not None else None

    def call(self, name: str, *args) -> asyncio.Future:
        """Future of `name(*args)` run in the worker (`name`: "search" or "embed"); it raises what the call
        raised, or WorkerDied."""
        future = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(WorkerDied(f"the {self.kind} worker was shut down"))
            return future
        self._queue.append((name, args, future))
        if self._in_flight is None:
            self._send_next()
        return future

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = self._context.Pipe()
        self._process = self._context.Process(target=_worker_main, args=(theirs, self.threads, self.niceness),
                                              name=f"musicrec-{self.kind}-worker", daemon=True)
        self._process.start()
        theirs.close()  # only the worker holds its end: its exit reads as EOF here
        self._connection = ours
        self._loop.add_reader(ours.fileno(), self._on_readable)

    def _send_next(self) -> None:
        while self._queue and self._in_flight is None:
            name, args, future = self._queue.popleft()
            if future.done():  # the request was cancelled (client gone) while it waited
                continue
            if self._connection is None:
                self._start()
            try:
                self._connection.send((name, args))
            except (OSError, ValueError):
                self._stop_process()
                future.set_exception(WorkerDied(f"the {self.kind} worker could not take the call"))
                continue
            self._in_flight = future

    def _on_readable(self) -> None:
        try:
            ok, value = self._connection.recv()
        except (EOFError, OSError, pickle.UnpicklingError) as error:
            code = self._stop_process()
            when = "during a call" if self._in_flight is not None else "between calls"
            log.error("the %s worker ended (exit code %s) %s: %r", self.kind, code, when, error)
            value, ok = WorkerDied(f"the {self.kind} worker ended (exit code {code}) during this call"), False
        future, self._in_flight = self._in_flight, None
        if future is not None and not future.done():
            future.set_result(value) if ok else future.set_exception(value)
        self._send_next()

    def _stop_process(self, timeout: float = 5.0) -> int | None:
        """Close the pipe and end the process (terminated after `timeout` s); returns its exit code."""
        if self._connection is not None:
            self._loop.remove_reader(self._connection.fileno())
            self._connection.close()
            self._connection = None
        code = None
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout)
            code, self._process = self._process.exitcode, None
        return code

    def close(self) -> None:
        """End the process; calls still queued or in flight, and any later call, fail with WorkerDied."""
        self._closed = True
        self._stop_process()
        pending = [future for *_, future in self._queue] + ([self._in_flight] if self._in_flight else [])
        self._queue.clear()
        self._in_flight = None
        for future in pending:
            if not future.done():
                future.set_exception(WorkerDied(f"the {self.kind} worker was shut down"))


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
        done = self.workers.search(folder, [text for _, text, _, _ in batch], k)
        done.add_done_callback(lambda result: self._finish(batch, result))

    def _finish(self, batch: list, result: asyncio.Future) -> None:
        self._busy = False
        error = result.exception()
        lists = result.result() if error is None else [None] * len(batch)
        for (*_, future), hits in zip(batch, lists):
            if future.done():
                continue
            if error is not None:  # every query of the batch gets the worker's error
                future.set_exception(error)
            else:
                future.set_result(hits)
        if self._waiting:
            self._launch()


class ModelWorkers:
    """The search and the embedding worker processes, each started on first use: `search` and `embed` return
    asyncio futures. `search_precision`: what the query encoder computes in, one of `query_encoder`'s
    SERVER_PRECISIONS ("auto" is resolved in the worker). Use from the event loop's thread only."""

    def __init__(self, threads: int = WORKER_THREADS, search_precision: str = "auto") -> None:
        self.search_precision = search_precision
        self._search = WorkerProcess("search", threads)
        self._embed = WorkerProcess("embed", threads, EMBED_NICENESS)

    def search(self, index_folder: str | Path, texts: list[str], k: int) -> asyncio.Future:
        """Future of one [(track_id, cosine score)] list per text, best first, from the search index in
        `index_folder` (the texts are encoded as one batch)."""
        return self._search.call("search", str(index_folder), self.search_precision, list(texts), k)

    def embed(self, backbone_spec: dict, path: str | Path) -> asyncio.Future:
        """Future of the float32 (dim,) vector of an audio file under the backbone `backbone_spec` (a release
        manifest's `similar_backbone`: name and options); AudioDecodeError (ValueError) for an undecodable
        file, LookupError for a backbone that reads no audio."""
        return self._embed.call("embed", json.dumps(backbone_spec, sort_keys=True), str(path))

    def close(self) -> None:
        self._search.close()
        self._embed.close()
