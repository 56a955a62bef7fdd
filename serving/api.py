"""The HTTP API and web page over the live serving release (`serving.snapshot`).

    run_server("storage", port=8000)   # http://127.0.0.1:8000/ (page), /docs (OpenAPI)

Endpoints (JSON; every error is {"error": message} with a fitting status, never a traceback):
- GET  /api/recommend/{user_id}?k=10    a user's top k
- GET  /api/similar/{track_id}?k=10     a catalog track's k most similar tracks
- POST /api/similar?k=10                multipart file "audio": the k tracks nearest to the uploaded audio, embedded
                                        with the release's similar-tracks backbone
- GET  /api/similar_artists/{artist_id}?k=10   an artist's k most similar artists (when the experiment runs
                                        the artist study)
- GET  /api/search?q=...&k=10           natural-language search (the release's text search index)
- GET  /api/users?prefix=&limit=50, GET /api/users/{user_id}/history, GET /api/health
- GET  /audio/{path}                    a file under the release's audio root (nothing else on disk)
- GET  /                                the web page (static files under /static)

Hot swap: a daemon thread reads `<storage>/serving/CURRENT` every `poll_seconds`; when it names a new release,
the thread loads that release completely and waits until the search worker has loaded the release's own search
index, then replaces one reference. A request reads that reference once, at its start, and answers from that
release throughout: requests in flight finish on the release they began with, none fails during a swap.
Models run in worker processes (`serving.model_worker`), loaded at most once per release, never per request;
lookups (recommend, similar by id, users) are in-memory and answered on the event loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.model_worker import ModelWorkers, SearchBatcher, WorkerDied
from serving.snapshot import FeatureMissing, Hit, ServingRelease, UnknownId, current_release, load_current

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_K = 200  # longest list a request may ask for
MAX_ID_CHARS = 200  # longest user or track id accepted
MAX_QUERY_CHARS = 500  # longest search query, characters
CHUNK_BYTES = 2**20  # upload copy chunk, bytes

K = Annotated[int, Query(ge=1, le=MAX_K, description=f"list length, 1..{MAX_K}")]
UserId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS)]
TrackId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS)]
ArtistId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS)]


class Served:
    """One release and what its model calls need: the search index folder and the audio backbone, both run
    in the model workers (`serving.model_worker`)."""

    def __init__(self, release: ServingRelease, workers: ModelWorkers, batcher: SearchBatcher) -> None:
        self.release = release
        self.workers = workers
        self.batcher = batcher

    def search_folder(self) -> str:
        folder = self.release.manifest.get("search_index")
        if not folder:
            raise FeatureMissing(f"release {self.release.name} has no text search index")
        return folder

    def backbone_spec(self) -> dict:
        """The release's similar-tracks backbone (manifest "similar_backbone": name and options)."""
        if self.release.vectors is None:
            raise FeatureMissing(f"release {self.release.name} has no track vectors: similar-by-audio is unavailable")
        spec = self.release.manifest.get("similar_backbone")
        if not spec:
            raise FeatureMissing(f"release {self.release.name}: similar-by-audio is unavailable: it has no content "
                                 "backbone to embed audio with (serve.similar)")
        return spec

    async def search(self, text: str, k: int) -> list[tuple[str, float]]:
        """[(track_id, cosine score)], best first."""
        return await self.batcher.search(self.search_folder(), text, k)

    async def embed(self, path: str) -> np.ndarray:
        """The backbone's float32 (dim,) vector of an audio file."""
        try:
            return await self.workers.embed(self.backbone_spec(), path)
        except LookupError as exc:  # a backbone that reads no audio (KeyError, UnknownId are not raised here)
            raise FeatureMissing(f"release {self.release.name}: similar-by-audio is unavailable: "
                                 f"{exc.args[0]}") from None

    async def warm(self) -> None:
        """Have the search worker load this release's search index now, so that its first searches do not wait
        for the load; raises what loading raised."""
        with contextlib.suppress(FeatureMissing):
            await self.batcher.search(self.search_folder(), "warm up", 1)


class LiveRelease:
    """The release requests are answered from (`served`), swapped by a watcher thread when CURRENT changes.
    `start` and `stop` run on the server's event loop."""

    warm_timeout = 300.0  # seconds a new release's search index may take to load before the swap is abandoned

    def __init__(self, storage: str | Path, poll_seconds: float, search_precision: str = "auto") -> None:
        self.storage = Path(storage)
        self.poll_seconds = poll_seconds
        self.workers = ModelWorkers(search_precision=search_precision)
        self.batcher = SearchBatcher(self.workers)
        self.served = Served(load_current(storage).load(), self.workers, self.batcher)
        self._folder = self.served.release.folder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warming: asyncio.Task | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()  # see `check`
        self._loop = asyncio.get_running_loop()
        self._warming = self._loop.create_task(self._warm_first())
        self._thread = threading.Thread(target=self._watch, name="release-watcher", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the watcher and the workers. The workers close first: that fails a swap's warm-up in flight,
        which the watcher thread may be waiting for, so joining the thread never waits on this event loop."""
        self._stop.set()
        if self._warming is not None:
            self._warming.cancel()
        self.workers.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def _warm_first(self) -> None:
        """Warm the release the server starts with, without holding up the start; a failure is logged (its
        searches will answer with the error)."""
        try:
            await self.served.warm()
        except Exception:  # noqa: BLE001 — logged; the server still answers everything else
            log.exception("loading the search index of release %s failed", self.served.release.name)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def check(self) -> None:
        """Swap in the release CURRENT names if it is new, once its tables are loaded and the search worker has
        loaded its index (runs in the watcher thread). One that fails to load is logged and skipped: the old
        release keeps serving until CURRENT changes again."""
        try:
            folder = current_release(self.storage)
            if folder is None or folder == self._folder:
                return
            self._folder = folder
            fresh = Served(ServingRelease(folder).load(), self.workers, self.batcher)
            asyncio.run_coroutine_threadsafe(fresh.warm(), self._loop).result(self.warm_timeout)
        except Exception:  # noqa: BLE001 — a bad release or unreadable storage must not stop the watcher
            log.exception("release watcher: reading or loading a new release failed; still serving %s",
                          self.served.release.name)
            return
        self.served = fresh
        # Everything alive now (libraries, the releases' lookup tables) leaves the cyclic GC's scans: a full
        # collection over it stalls the event loop for tens of ms, a few times a minute under load. Reference
        # counting still frees a replaced release (its tables hold no reference cycles).
        gc.freeze()
        log.info("now serving release %s", fresh.release.name)


class UploadTooLarge(HTTPException):
    """A request body larger than the server accepts: 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"upload too large: a request body may hold at most {max_bytes} bytes")


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413 {"error"}: at once when its
    Content-Length says so (nothing read), else as soon as the bytes received pass the limit (reading stops)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = UploadTooLarge(self.max_bytes)
            return await _error(error.status_code, error.detail)(scope, receive, send)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _items(hits: list[Hit]) -> list[dict[str, Any]]:
    return [hit.as_dict() for hit in hits]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(problems))

    @app.exception_handler(UnknownId)
    async def unknown_id(request: Request, exc: UnknownId) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(FeatureMissing)
    async def feature_missing(request: Request, exc: FeatureMissing) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(WorkerDied)
    async def worker_died(request: Request, exc: WorkerDied) -> JSONResponse:
        return _error(503, f"{exc}; try again")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal server error ({type(exc).__name__}); the traceback is in the server log")


def create_app(storage: str | Path, poll_seconds: float = 1.0, max_upload_bytes: int = 20 * 2**20,
               search_precision: str = "auto") -> FastAPI:
    """The API and page over `<storage>/serving`'s live release (FileNotFoundError when there is none yet).
    `poll_seconds`: how often the watcher checks for a new release, seconds. `max_upload_bytes`: largest request
    body (the audio upload), bytes (the file plus a few hundred bytes of multipart framing); larger: 413.
    `search_precision`: what the search worker's query encoder computes in, one of `query_encoder`'s
    SERVER_PRECISIONS: "auto" (the default) is bfloat16 on CPUs that multiply it natively, else float32."""
    from recommenders.query_encoder import SERVER_PRECISIONS, check_precision

    check_precision(search_precision, SERVER_PRECISIONS, "search_precision")
    live = LiveRelease(storage, poll_seconds, search_precision)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live.start()
        try:
            yield
        finally:
            await live.stop()

    app = FastAPI(title="musicrec", summary="Recommendations, similar tracks and search over the live release.",
                  lifespan=lifespan)
    app.state.live = live
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)

    # In-memory lookups (microseconds) run on the event loop; model calls (search, upload) in the model workers.
    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """The live release and the system it serves."""
        manifest = live.served.release.manifest
        return {key: manifest.get(key) for key in ("release", "experiment", "recommender", "backbone")}

    @app.get("/api/recommend/{user_id:path}")
    async def recommend(user_id: UserId, k: K = 10) -> dict[str, Any]:
        """The user's top `k` tracks (at most the release's list length)."""
        release = live.served.release
        return {"user_id": user_id, "release": release.name, "items": _items(release.recommend(user_id, k))}

    @app.get("/api/similar/{track_id:path}")
    async def similar(track_id: TrackId, k: K = 10) -> dict[str, Any]:
        """The `k` catalog tracks most similar to a catalog track."""
        release = live.served.release
        return {"track_id": track_id, "release": release.name, "items": _items(release.similar(track_id, k))}

    @app.get("/api/similar_artists/{artist_id:path}")
    async def similar_artists(artist_id: ArtistId, k: K = 10) -> dict[str, Any]:
        """The `k` artists most similar to an artist (GraphSAGE over the artist graph)."""
        release = live.served.release
        return {"artist_id": artist_id, "release": release.name,
                "items": [hit.as_dict() for hit in release.similar_artists(artist_id, k)]}

    @app.post("/api/similar")
    async def similar_to_audio(
        audio: Annotated[UploadFile, File(description="an audio file (any format libsndfile reads)")], k: K = 10,
    ) -> dict[str, Any]:
        """The `k` catalog tracks nearest (cosine) to an uploaded audio file; only its first 600 s are decoded
        (`serving.audio_query.MAX_SECONDS`)."""
        served = live.served
        served.backbone_spec()  # FeatureMissing before the upload is copied
        name = Path(audio.filename or "upload").name
        suffix = Path(name).suffix if Path(name).suffix[1:].isalnum() else ""
        with tempfile.NamedTemporaryFile(prefix="musicrec-upload-", suffix=suffix) as tmp:
            await run_in_threadpool(shutil.copyfileobj, audio.file, tmp, CHUNK_BYTES)
            tmp.flush()
            try:
                vector = await served.embed(tmp.name)
            except ValueError as exc:  # AudioDecodeError, or a non-finite vector
                raise HTTPException(422, str(exc).replace(tmp.name, name)) from None
        return {"release": served.release.name, "items": _items(served.release.similar_to_vector(vector, k))}

    @app.get("/api/search")
    async def search(q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)], k: K = 10) -> dict[str, Any]:
        """The `k` tracks whose tags and caption best match the text `q` (cosine score)."""
        if not q.strip():
            raise HTTPException(422, "q: the query is blank")
        served = live.served
        hits = served.release.hits(await served.search(q, k))
        return {"query": q, "release": served.release.name, "items": _items(hits)}

    @app.get("/api/users")
    async def users(prefix: Annotated[str, Query(max_length=MAX_ID_CHARS)] = "",
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        """Known user ids starting with `prefix`, sorted, at most `limit`."""
        return {"users": live.served.release.users(prefix, limit)}

    @app.get("/api/users/{user_id:path}/history")
    async def history(user_id: UserId) -> dict[str, Any]:
        """The user's plays, oldest first (score 0)."""
        return {"user_id": user_id, "items": _items(live.served.release.history(user_id))}

    @app.get("/audio/{path:path}", response_class=FileResponse)
    async def audio_file(path: str) -> FileResponse:
        """A track's audio file, `path` relative to the release's audio root; anything resolving outside it: 403."""
        release = live.served.release
        root = release.manifest.get("audio_root")
        if not root:
            raise FeatureMissing(f"release {release.name} has no audio folder")
        root_path = Path(root).resolve()
        try:
            target = (root_path / path).resolve()
        except (OSError, ValueError):
            raise HTTPException(403, f"refused audio path {path!r}") from None
        if not target.is_relative_to(root_path):
            raise HTTPException(403, f"refused audio path {path!r}: outside the audio folder")
        if not target.is_file():
            raise HTTPException(404, f"no audio file {path!r}")
        return FileResponse(target)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def run_server(storage: str | Path, host: str = "127.0.0.1", port: int = 8000,
               search_precision: str = "auto") -> None:
    """Serve `create_app(storage, search_precision=...)` with uvicorn until interrupted (blocks). The server's
    own process imports no model library and runs BLAS and OpenMP (faiss) on one thread: its lookups are small,
    and the model workers run their own (`serving.model_worker`)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines list the builds it could not load
    uvicorn.run(create_app(storage, search_precision=search_precision), host=host, port=port)
