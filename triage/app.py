"""The web app: ``create_app(settings)`` mounts the JSON API (``triage.api``) and the review pages
(``triage.review``), which never import each other, over one store and one served model.

Nothing is opened or loaded until start-up, which opens the store, loads and warms the model
(``triage.serving``), (in the main thread) makes SIGHUP reload it, and starts the background
threads of issue 10: the deadline check (``triage.sla``) and, with a webhook URL, the outbox
delivery (``triage.outbox``). The complainant's tracking routes (``triage.public``) are mounted too. Errors from
``triage.errors`` become HTTP status codes through ``triage.errors.http_status``, here, for both;
anything unexpected is a JSON 500 that names no input. Request bodies over
``TRIAGE_MAX_BODY_BYTES`` are refused with a 413 before they are read, request heads over
``TRIAGE_MAX_HEADER_BYTES`` with a 431, and every answer that sets no ``Cache-Control`` of its own
gets ``no-store`` (``triage.security``). Wrong keys and failed logins are counted per client
(``app.state.failure_limits``, read through ``triage.deps``) in counters shared by all worker processes
(``triage.limits``). A ``POST /v1/triage`` that is plainly
fine is answered by ``triage.hotpath`` without FastAPI's per-request machinery, with the same bytes.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from functools import partial
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.api import case_routes, operation_routes, triage_answers, triage_routes
from triage.batching import MicroBatcher
from triage.cases import Cases
from triage.config import Settings, get_settings
from triage.corrections import agency_corrections
from triage.database import open_store
from triage.errors import BusyError, LabelError, ThrottledError, TooLargeError, TriageError, http_status
from triage.hotpath import TriageFastPath
from triage.limits import FailureLimiter, LimitsFile, RateLimiter
from triage.outbox import Deliverer
from triage.public import router as public_router
from triage.review import router as review_router
from triage.security import HeaderLimit, NoStore
from triage.serving import ModelHolder
from triage.sla import Every, escalate_overdue
from triage.store import ReviewStore

log = logging.getLogger("triage.app")


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with a 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        too_big = False

        async def counting() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_big = True
                    raise TooLargeError(f"request body is over {self.limit} bytes")
            return message

        await self.app(scope, counting, send)

    async def _refuse(self, send: Send) -> None:
        body = f'{{"error": "request body is over {self.limit} bytes (TRIAGE_MAX_BODY_BYTES)"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class FastJSON(JSONResponse):
    """JSON by orjson (several times faster than the standard library), Thai as UTF-8, never ``\\u`` escapes."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _error(code: int, message: str, detail: Any = None) -> JSONResponse:
    return FastJSON({"error": message, "detail": detail}, status_code=code)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        # the input is left out on purpose: it may be a whole complaint with personal data
        errors.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    if any(e["type"] == "json_invalid" for e in errors):
        return _error(400, "the request body is not valid JSON", errors)
    summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    return _error(422, f"invalid request: {summary}", errors)


# -- the app --------------------------------------------------------------------------------------

async def _triage_error(request: Request, exc: Exception) -> JSONResponse:
    code = http_status(exc)
    if code >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    detail = {"allowed": exc.allowed} if isinstance(exc, LabelError) else None
    response = _error(code, str(exc), detail)
    if code == 401:
        response.headers["WWW-Authenticate"] = "APIKey"
    if isinstance(exc, BusyError):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, ThrottledError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    return _validation_error(cast(RequestValidationError, exc))  # registered for this class only


async def _http(request: Request, exc: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, exc)  # registered for this class only
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if isinstance(exc.__cause__, TooLargeError):  # a streamed body over the limit, cut off by BodyLimit
        return _error(413, str(exc.__cause__))
    if exc.status_code == 400 and "parsing the body" in message:
        message = "the request body cannot be read: it must be UTF-8 JSON"
    return _error(exc.status_code, message)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s (%s)", request.method, request.url.path, type(exc).__name__)
    return _error(500, "internal error; the request was not completed")


def start_followup(settings: Settings, store: ReviewStore, holder: ModelHolder) -> list[Any]:
    """The service's background threads: the deadline check and (with a webhook URL) the outbox delivery.

    Neither runs in a request: a slow pass or a hanging webhook receiver never holds one up."""
    tasks: list[Any] = []
    deliverer = None
    if settings.webhook_url:
        deliverer = Deliverer(store, settings.webhook_url, settings.webhook_secret, settings.webhook_timeout,
                              settings.webhook_retry_seconds, settings.webhook_max_backoff).start()
        tasks.append(deliverer)

    def escalation_pass() -> None:
        with exclusive(store, "deadline-check") as ours:  # one replica at a time (PostgreSQL: an advisory lock)
            if not ours:
                return
            router = holder.current.router if holder.ready else None
            if escalate_overdue(store, getattr(router, "directory", None), settings.escalation_agency) and deliverer:
                deliverer.wake()

    tasks.insert(0, Every("deadline-check", settings.sla_check_seconds, escalation_pass).start())
    return tasks


def exclusive(store: ReviewStore, name: str) -> AbstractContextManager[bool]:
    """The store's lock for a job only one replica should run at a time; a store without one (SQLite, whose
    writes are serialised anyway) always says yes. The job must still be safe to run twice."""
    lock = getattr(store, "exclusive", None)
    return cast(AbstractContextManager[bool], lock(name)) if lock is not None else nullcontext(True)


def follow_replicas(store: ReviewStore, holder: ModelHolder) -> None:
    """With a store that can announce reloads (PostgreSQL), a reload here reaches every replica and back."""
    announce, follow = getattr(store, "announce_reload", None), getattr(store, "follow_reloads", None)
    if announce is not None and follow is not None:
        holder.also_announce = announce
        follow(holder.reload_quietly)


def _nothing() -> None:
    """Waking the webhook delivery when there is none."""


class TriageService(FastAPI):
    """The FastAPI app with ``POST /v1/triage`` taken first by ``triage.hotpath`` (``fast_path``), before
    FastAPI's own layers (its error and telemetry middleware, the router) and the app's middleware.

    The fast path answers a plainly fine request itself and hands anything else to the full app
    (``FastAPI.__call__``) with the body read so far, so every refusal is still the app's own.
    """

    fast_path: TriageFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and fast.wants(scope):
            scope["app"] = self
            await fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    """Build the app for these settings. Opening the store and loading the model happen at start-up."""
    settings.check_serving()
    # each (re)load teaches the agency model the reviewers' agency corrections so far (issue 14 item 4)
    holder = ModelHolder(settings.model_dir, settings.data_dir / "reload.signal",
                         corrections=lambda: agency_corrections(app.state.store))

    def triage_batch(items: list[Any]) -> list[tuple[bytes, bool] | Exception]:
        cases = Cases(app.state.store, holder.current, review_threshold=settings.review_threshold,
                      escalation_agency=settings.escalation_agency, max_text_chars=settings.max_text_chars,
                      notify=getattr(app.state, "wake_delivery", None))
        return triage_answers(cases, items)

    # POST /v1/triage: concurrent requests predicted and group-committed together (triage.batching)
    batcher: MicroBatcher[Any, tuple[bytes, bool]] = MicroBatcher(
        triage_batch, settings.batch_wait_ms, settings.batch_max, settings.batch_queue, name="batch-triage")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.keys:
            log.warning("DEVELOPMENT MODE: no API keys, every caller is admin. Never expose this service.")
        app.state.store = open_store(settings.database, settings.sla, webhooks=bool(settings.webhook_url),
                                     pool_size=settings.database_pool_size)
        previous = None
        background: list[Any] = []
        try:
            limits.open()  # at start-up: a data folder the counters cannot be kept in is said now, not per request
            holder.reload()
            follow_replicas(app.state.store, holder)
            background = start_followup(settings, app.state.store, holder)
            deliverer = next((t for t in background if isinstance(t, Deliverer)), None)
            app.state.wake_delivery = deliverer.wake if deliverer else _nothing
            if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
                # one process: SIGHUP reloads in place. Several workers: uvicorn's parent takes SIGHUP
                # and replaces the workers one at a time, each new one loading the current model.
                previous = signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
                    target=holder.reload_quietly, name="sighup-reload", daemon=True).start())
            batcher.start()
            yield
        finally:
            await batcher.stop()
            if previous is not None:
                signal.signal(signal.SIGHUP, previous)
            for task in background:
                task.stop()
            app.state.wake_delivery = _nothing
            store, app.state.store = app.state.store, None
            store.close()
            limits.close()

    app = TriageService(title="triage", version="1", lifespan=lifespan, default_response_class=FastJSON,
                  description="Triage of Thai citizens' complaints: topic, urgency, agency; cases and review.")
    app.state.models = holder
    app.state.settings = settings
    app.state.store = None
    app.state.batcher = batcher
    # throttling counters shared by every worker process on this machine (triage.limits)
    limits = LimitsFile(settings.data_dir / "limits.db")
    app.state.failure_limits = {"keys": FailureLimiter(limits, "keys", settings.key_failures, settings.failure_window),
                                "logins": FailureLimiter(limits, "logins", settings.login_failures,
                                                         settings.failure_window)}
    app.state.wake_delivery = _nothing
    app.state.track_limiter = RateLimiter(limits, settings.track_rate_per_minute, settings.track_burst)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(NoStore)
    app.add_middleware(HeaderLimit, limit=settings.max_header_bytes)
    # ahead of everything: POST /v1/triage that is plainly fine skips FastAPI's machinery; anything else
    # goes on to the full app (FastAPI.__call__: its error middleware, the middleware above, the routes)
    app.fast_path = TriageFastPath(partial(FastAPI.__call__, app), app.state, on_triage_error=_triage_error,
                                   on_unexpected=_unexpected)
    app.add_exception_handler(TriageError, _triage_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(triage_routes)  # first: the hot path is matched before the other routes
    app.include_router(case_routes)
    app.include_router(operation_routes)
    app.include_router(public_router)  # the complainant's tracking (issue 10): no key
    app.include_router(review_router)
    return app


_PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal a process gets when its parent ends."""


def die_with_parent() -> bool:
    """In a worker process started by serve.py's parent, ask Linux to SIGKILL this process when the parent
    ends, however it ends; True if asked. uvicorn's workers otherwise outlive a parent killed with
    SIGKILL (``kill -9`` of serve.py), go on answering on its port and keep a restarted serve.py from
    binding it. With the worker killed too, ``kill -9`` of a multi-worker service does what it does to
    one process: requests not yet answered are lost, every answered one is committed (group commit)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent.pid:  # the parent ended before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def app_from_env() -> FastAPI:
    """The app built from ``TRIAGE_*`` environment variables: what each uvicorn worker process runs
    (serve.py with several workers); the worker ends with its parent (``die_with_parent``)."""
    die_with_parent()
    return create_app(get_settings())
