"""The HTTP API: a thin shell over the model, the router and the case store.

``create_app(settings)`` builds the app; nothing is opened or loaded until its start-up, which
opens the store, loads and warms the model, and (in the main thread) makes SIGHUP reload it.
Errors from ``triage.errors`` become HTTP status codes in one place (``STATUS_FOR``); anything
unexpected is a JSON 500 that names no input. Raw complaint text and reporter contacts never
reach a log line.

Roles (``X-API-Key``): intake may triage; reviewer may read, correct and move cases; admin may
do everything and reload the model.
"""


import hmac
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage import registry
from triage.config import Settings
from triage.errors import (
    ConfigError,
    ConflictError,
    DataError,
    InputError,
    LabelError,
    ModelError,
    NotFoundError,
    StorageError,
    TriageError,
)
from triage.routing import Router
from triage.security import FailureLimiter, HeaderLimit, NoStore, log_safe, scrub_prediction
from triage.schemas import (
    BatchIn,
    BatchOut,
    CaseList,
    CaseOut,
    ComplaintIn,
    CorrectionIn,
    HistoryOut,
    ModelOut,
    QueueOut,
    StatusIn,
    TriageOut,
)
from triage.store import Store, open_store
from triage.text import has_letters, mask_personal

log = logging.getLogger("triage.api")

PERMISSIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"triage", "model"}),
    "reviewer": frozenset({"read", "correct", "status", "model"}),
    "admin": frozenset({"triage", "read", "correct", "status", "model", "admin"}),
}


class TooLargeError(InputError):
    """A request bigger than a configured limit (413)."""


class UnauthorizedError(TriageError):
    """No API key, or one that is not configured (401)."""


class ForbiddenError(TriageError):
    """A valid key whose role may not do this (403)."""


class ThrottledError(TriageError):
    """A client that sent too many wrong keys (429, with ``Retry-After``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong API keys from this address; try again in {retry_after} s")
        self.retry_after = retry_after


# The one place where errors become status codes (most specific class first).
STATUS_FOR: list[tuple[type[Exception], int]] = [
    (UnauthorizedError, 401), (ForbiddenError, 403), (ThrottledError, 429), (TooLargeError, 413), (LabelError, 422), (InputError, 422),
    (NotFoundError, 404), (ConflictError, 409), (DataError, 422), (ModelError, 503), (StorageError, 503),
    (ConfigError, 500), (TriageError, 500),
]


def status_for(exc: Exception) -> int:
    for cls, code in STATUS_FOR:
        if isinstance(exc, cls):
            return code
    return 500


def check_model_labels(model: Any, topics: list[str] | None, urgency: str | None) -> None:
    """Raise LabelError for a topic or urgency level that is not in the served model's label sets."""
    for topic in topics or []:
        if topic not in model.topic_labels:
            raise LabelError("topic", topic, model.topic_labels)
    if urgency is not None and urgency not in model.urgency_levels:
        raise LabelError("urgency", urgency, model.urgency_levels)


def allowed_agencies(router: Any) -> set[str] | None:
    """The agency names a correction may use: the router's directory, or None (any name) if it has none."""
    names = getattr(router, "agency_names", None)
    if names is None:
        return None
    return set(names() if callable(names) else names)


@dataclass(frozen=True)
class Loaded:
    """One model with its router, swapped as a whole on reload."""

    model: Any
    meta: dict[str, Any]
    router: Any
    path: Path
    loaded_at: str


class ModelHolder:
    """Holds the served model; ``reload`` loads and warms a new one, then swaps it in one assignment.

    A request takes ``holder.current`` once and uses that snapshot throughout, so a reload never
    changes the model under a request, and no request waits for a reload.
    """

    def __init__(self, path: Path, signal_file: Path | None = None) -> None:
        self.path = path
        self.signal_file = signal_file
        self._current: Loaded | None = None
        self._lock = threading.Lock()
        self._seen = self._signal_mtime()
        self._next_check = 0.0

    def _signal_mtime(self) -> int:
        try:
            return self.signal_file.stat().st_mtime_ns if self.signal_file else 0
        except OSError:
            return 0

    @property
    def current(self) -> Loaded:
        loaded = self._current
        if loaded is None:
            raise ModelError("the model is not loaded yet")
        if self.signal_file is not None and time.monotonic() >= self._next_check:
            self._follow_other_workers()
        return loaded

    def _follow_other_workers(self) -> None:
        """Reload (in the background) when another worker process announced a reload, checked once a second."""
        self._next_check = time.monotonic() + 1.0
        seen = self._signal_mtime()
        if seen != self._seen:
            self._seen = seen
            threading.Thread(target=self._reload_quietly, name="follow-reload", daemon=True).start()

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except TriageError as exc:
            log.error("reload failed, still serving the previous model: %s", exc)

    def announce(self) -> None:
        """Tell the other worker processes to reload: touch the signal file they watch."""
        if self.signal_file is None:
            return
        self.signal_file.parent.mkdir(parents=True, exist_ok=True)
        self.signal_file.write_text(datetime.now(UTC).isoformat(), encoding="utf-8")
        self._seen = self._signal_mtime()

    @property
    def ready(self) -> bool:
        return self._current is not None

    def reload(self) -> Loaded:
        with self._lock:
            model, meta = registry.load(self.path)
            # one complaint per call: joblib's worker dispatch costs more than the transform itself
            # (27 vs 3.6 ms per complaint measured); a server gets its parallelism from requests
            if hasattr(model.featurizer, "n_jobs"):
                model.featurizer.n_jobs = 1
            router = Router.load()
            model.predict(["ไฟฟ้าดับทั้งซอย สายไฟช็อต โทร 081-234-5678"], ["บางรัก"], router=router)  # warm up
            loaded = Loaded(model, meta, router, registry.resolve(self.path),
                            datetime.now(UTC).isoformat(timespec="microseconds"))
            self._current = loaded
        log.info("serving model %s from %s", meta.get("version"), loaded.path)
        return loaded


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


def _error(code: int, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=code)


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


def create_app(settings: Settings) -> FastAPI:
    """Build the app for these settings. Opening the store and loading the model happen at start-up."""
    settings.check_serving()
    keys = settings.keys
    holder = ModelHolder(settings.model_dir, settings.data_dir / "reload.signal")
    state: dict[str, Any] = {}

    def store() -> Store:
        s = state.get("store")
        if s is None:
            raise StorageError("the case store is not open")
        return s

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not keys:
            log.warning("DEVELOPMENT MODE: no API keys, every caller is admin. Never expose this service.")
        state["store"] = open_store(settings.database)
        previous = None
        try:
            holder.reload()
            if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
                # one process: SIGHUP reloads in place. Several workers: uvicorn's parent takes SIGHUP
                # and replaces the workers one at a time, each new one loading the current model.
                previous = signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
                    target=holder._reload_quietly, name="sighup-reload", daemon=True).start())
            yield
        finally:
            if previous is not None:
                signal.signal(signal.SIGHUP, previous)
            state.pop("store").close()

    app = FastAPI(title="triage", version="1", lifespan=lifespan,
                  description="Triage of Thai citizens' complaints: topic, urgency, agency; cases and review.")
    app.state.models = holder
    app.state.settings = settings
    app.state.store = store
    app.state.failure_limits = {"keys": FailureLimiter(settings.key_failures, settings.failure_window),
                                "logins": FailureLimiter(settings.login_failures, settings.failure_window)}
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(NoStore)
    app.add_middleware(HeaderLimit, limit=settings.max_header_bytes)
    # review pages (issue 5): everything else for them lives in triage/review.py
    from triage.review import router as review_router

    app.include_router(review_router)

    @app.exception_handler(TriageError)
    async def _triage_error(request: Request, exc: TriageError) -> JSONResponse:
        code = status_for(exc)
        if code >= 500:
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        detail = {"allowed": exc.allowed} if isinstance(exc, LabelError) else None
        response = _error(code, str(exc), detail)
        if code == 401:
            response.headers["WWW-Authenticate"] = "APIKey"
        if isinstance(exc, ThrottledError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if isinstance(exc.__cause__, TooLargeError):  # a streamed body over the limit, cut off by BodyLimit
            return _error(413, str(exc.__cause__))
        if exc.status_code == 400 and "parsing the body" in message:
            message = "the request body cannot be read: it must be UTF-8 JSON"
        return _error(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s (%s)", request.method, request.url.path, type(exc).__name__)
        return _error(500, "internal error; the request was not completed")

    api_key = APIKeyHeader(name="X-API-Key", auto_error=False)

    key_failures: FailureLimiter = app.state.failure_limits["keys"]

    def need(permission: str) -> Callable[..., str]:
        def check(request: Request, key: Annotated[str | None, Depends(api_key)]) -> str:
            if not keys:
                return "admin"
            client = request.client.host if request.client else "unknown"
            if key:  # a missing key is no guess; a wrong one counts, and over the limit even the right one waits
                wait = key_failures.retry_after(client)
                if wait is not None:
                    raise ThrottledError(wait)
            role = None
            if key:
                for known, known_role in keys.items():
                    if hmac.compare_digest(known.encode(), key.encode("utf-8", "replace")):
                        role = known_role
            if role is None:
                if key:
                    key_failures.fail(client)
                    log.warning("refused API key from client %s: unknown key (%s %s)", log_safe(client),
                                request.method, log_safe(request.url.path))
                raise UnauthorizedError("missing or unknown API key: send it in the X-API-Key header")
            if permission not in PERMISSIONS.get(role, frozenset()):
                raise ForbiddenError(f"role {role!r} may not do this (needs permission {permission!r})")
            return role
        return check

    CaseId = Annotated[int, PathParam(ge=1, le=2**62, description="The case id")]

    # -- triage ---------------------------------------------------------------------------------

    def check_text(item: ComplaintIn, where: str) -> None:
        if len(item.text) > settings.max_text_chars:
            raise TooLargeError(f"{where}text has {len(item.text)} characters; at most {settings.max_text_chars} "
                                "are allowed (TRIAGE_MAX_TEXT_CHARS)")
        if not item.text.strip():
            raise InputError(f"{where}text is empty or only whitespace; send the complaint's words")
        if not has_letters(item.text):
            raise InputError(f"{where}text has no letters or digits to triage")

    def review_reasons(loaded: Loaded, pred: dict[str, Any]) -> list[str]:
        reasons = []
        scores = pred.get("topic_scores") or {}
        if not scores or max(scores.values()) < settings.review_threshold:
            reasons.append("low_confidence")
        levels = loaded.model.urgency_levels
        if levels and pred.get("urgency") == levels[0]:
            reasons.append("urgent_not_accepted")
        if pred.get("agency_needs_review"):
            reasons.append("agency_uncertain")
        topics, agencies = pred.get("topics") or [], pred.get("agencies") or []
        if topics and agencies and store().agency_corrected_before(topics[0], agencies[0]):
            reasons.append("agency_corrected_before")
        return reasons

    def urgency_rank(loaded: Loaded, urgency: str | None) -> int:
        levels = loaded.model.urgency_levels
        return levels.index(urgency) if urgency in levels else len(levels)

    def triage_out(case: dict[str, Any], created: bool) -> TriageOut:
        pred = case["prediction"]
        return TriageOut(
            case_id=case["id"], external_id=case["external_id"], created=created, topics=case["topics"],
            topic_scores=pred.get("topic_scores", {}), urgency=case["urgency"],
            urgency_scores=pred.get("urgency_scores", {}), urgency_cues=pred.get("urgency_cues", []),
            agencies=case["agencies"], agency_scores=pred.get("agency_scores", {}),
            agency_candidates=pred.get("agency_candidates") or [], agency_explanation=pred.get("agency_explanation") or {},
            needs_review=case["needs_review"], review_reasons=case["review_reasons"],
            explanation=pred.get("explanation", []), model_version=case["model_version"], status=case["status"],
        )

    def triage_many(items: list[ComplaintIn]) -> list[TriageOut]:
        started = time.perf_counter()
        for i, item in enumerate(items):
            check_text(item, f"items[{i}]." if len(items) > 1 else "")
        known: dict[int, dict[str, Any]] = {}
        for i, item in enumerate(items):
            if item.external_id is not None:
                case = store().find_external(item.external_id)
                if case is not None:
                    if case["text"] != item.text:
                        raise ConflictError(f"external_id {item.external_id!r} is already case {case['id']} with a "
                                            "different text; a retry must send the same complaint")
                    known[i] = case
        todo = [i for i in range(len(items)) if i not in known]
        loaded = holder.current
        preds = loaded.model.predict([items[i].text for i in todo], [items[i].district for i in todo],
                                     router=loaded.router) if todo else []
        records = []
        for i, pred in zip(todo, preds):
            item = items[i]
            records.append({
                "text": item.text, "masked_text": mask_personal(item.text), "district": item.district,
                "source": item.source, "external_id": item.external_id, "reporter_contact": item.reporter_contact,
                "model_version": loaded.model.version,
                "prediction": scrub_prediction(
                    {k: pred.get(k) for k in ("topics", "topic_scores", "urgency", "urgency_scores", "urgency_cues",
                                              "agencies", "agency_scores", "agency_candidates", "agency_explanation",
                                              "explanation")}, item.text),
                "topics": pred["topics"], "urgency": pred.get("urgency"),
                "urgency_rank": urgency_rank(loaded, pred.get("urgency")), "agencies": pred.get("agencies") or [],
                "needs_review": False, "review_reasons": review_reasons(loaded, pred),
            })
            records[-1]["needs_review"] = bool(records[-1]["review_reasons"])
        stored = store().create_cases(records)
        results: list[TriageOut] = []
        fresh = iter(stored)
        for i in range(len(items)):
            case, created = (known[i], False) if i in known else next(fresh)
            results.append(triage_out(case, created))
        ms = (time.perf_counter() - started) * 1000
        for r in results:
            log.info("case %d %s model %s topics %s urgency %s review %s (%.1f ms)", r.case_id,
                     "created" if r.created else "existing", r.model_version, r.topics, r.urgency, r.review_reasons, ms)
        return results

    @app.post("/v1/triage", response_model=TriageOut, tags=["triage"],
              responses={200: {"description": "The external_id was known: the stored case"}, 201: {}})
    def triage(body: ComplaintIn, response: Response, role: Annotated[str, Depends(need("triage"))]) -> TriageOut:
        """Triage one complaint and store it as a case (201), or return the known case for its external_id (200)."""
        out = triage_many([body])[0]
        response.status_code = 201 if out.created else 200
        return out

    @app.post("/v1/triage/batch", response_model=BatchOut, tags=["triage"])
    def triage_batch(body: BatchIn, role: Annotated[str, Depends(need("triage"))]) -> BatchOut:
        """Triage up to TRIAGE_MAX_BATCH complaints in one call; all are stored or none."""
        if len(body.items) > settings.max_batch:
            raise TooLargeError(f"batch has {len(body.items)} complaints; at most {settings.max_batch} are allowed "
                                "(TRIAGE_MAX_BATCH)")
        return BatchOut(results=triage_many(body.items))

    # -- cases ----------------------------------------------------------------------------------

    def case_out(case: dict[str, Any], with_text: bool, role: str = "reviewer") -> CaseOut:
        """A case for a response: raw text only where asked for, the reporter's contact only for admins."""
        data = {k: case[k] for k in CaseOut.model_fields if k in case and k not in ("text", "reporter_contact")}
        data["prediction"] = scrub_prediction(case["prediction"], case["text"])  # cases stored before the fix
        return CaseOut(**data, text=case["text"] if with_text else None,
                       reporter_contact=case.get("reporter_contact") if role == "admin" else None)

    @app.get("/v1/cases/{case_id}", response_model=CaseOut, tags=["cases"])
    def get_case(case_id: CaseId, role: Annotated[str, Depends(need("read"))]) -> CaseOut:
        """One case with its raw text, prediction and current labels (the reporter's contact for admins)."""
        return case_out(store().get_case(case_id), with_text=True, role=role)

    @app.get("/v1/cases", response_model=CaseList, tags=["cases"])
    def list_cases(role: Annotated[str, Depends(need("read"))],
                   status: Annotated[str | None, Query(max_length=50)] = None,
                   agency: Annotated[str | None, Query(max_length=200)] = None,
                   urgency: Annotated[str | None, Query(max_length=50)] = None,
                   needs_review: bool | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                   cursor: Annotated[str | None, Query(max_length=30)] = None) -> CaseList:
        """Cases newest first, filtered; pass ``next_cursor`` back as ``cursor`` for the next page."""
        after = None
        if cursor is not None:
            if not cursor.isdigit() or int(cursor) > 2**62:
                raise InputError(f"cursor {cursor!r} is not one this API gave out")
            after = int(cursor)
        for name, value in (("status", status), ("agency", agency), ("urgency", urgency)):
            if value is not None:
                _unicode(name, value)
        cases, nxt = store().list_cases(status=status, agency=agency, urgency=urgency, needs_review=needs_review,
                                        limit=min(limit, settings.page_limit), cursor=after)
        return CaseList(items=[case_out(c, with_text=False) for c in cases], next_cursor=None if nxt is None else str(nxt))

    @app.get("/v1/review/queue", response_model=QueueOut, tags=["review"])
    def review_queue(role: Annotated[str, Depends(need("read"))],
                     limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                     offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> QueueOut:
        """Open cases that need a person: most urgent first, then oldest first."""
        cases, total = store().review_queue(min(limit, settings.page_limit), offset)
        return QueueOut(items=[case_out(c, with_text=False) for c in cases], total=total)

    @app.post("/v1/cases/{case_id}/corrections", response_model=CaseOut, tags=["review"])
    def correct(case_id: CaseId, body: CorrectionIn, role: Annotated[str, Depends(need("correct"))]) -> CaseOut:
        """Record a reviewer's correction (kept in an audit trail); the case's labels change and it leaves the queue."""
        loaded = holder.current
        check_model_labels(loaded.model, body.topics, body.urgency)
        names = allowed_agencies(loaded.router)
        for agency in body.agencies or []:
            if names is not None and agency not in names:
                raise LabelError("agency", agency, sorted(names))
        rank = urgency_rank(loaded, body.urgency) if body.urgency is not None else None
        case = store().add_correction(case_id, body.reviewer, body.reason, body.topics, body.urgency, rank,
                                      body.agencies)
        log.info("case %d corrected by %s: %s", case_id, log_safe(body.reviewer),
                 ", ".join(k for k in ("topics", "urgency", "agencies") if getattr(body, k) is not None))
        return case_out(case, with_text=True)

    @app.post("/v1/cases/{case_id}/status", response_model=CaseOut, tags=["cases"])
    def change_status(case_id: CaseId, body: StatusIn, role: Annotated[str, Depends(need("status"))]) -> CaseOut:
        """Move a case on: assign, start, forward to another agency, escalate to the central level, resolve, reject."""
        agency = body.agency
        if body.status == "escalated" and agency is None:
            agency = settings.escalation_agency
        if body.status == "forwarded" and agency is None:
            raise InputError("status 'forwarded' needs 'agency': the agency the case goes to")
        names = allowed_agencies(holder.current.router)
        if agency is not None and names is not None and agency not in names and agency != settings.escalation_agency:
            raise LabelError("agency", agency, sorted(names))
        case = store().change_status(case_id, body.status, agency, body.actor, body.note)
        log.info("case %d -> %s (%s)", case_id, body.status, log_safe(body.actor))
        return case_out(case, with_text=True)

    @app.get("/v1/cases/{case_id}/history", response_model=HistoryOut, tags=["cases"])
    def history(case_id: CaseId, role: Annotated[str, Depends(need("read"))]) -> HistoryOut:
        """Every step of a case, oldest first, so the complainant can be told where it stands."""
        events = store().history(case_id)
        case = store().get_case(case_id)
        return HistoryOut(case_id=case_id, status=case["status"], agency=case["agency"], events=events)

    # -- model and operations -------------------------------------------------------------------

    def model_out(loaded: Loaded) -> ModelOut:
        return ModelOut(version=loaded.model.version, created=loaded.meta.get("created"),
                        labels={"topic": loaded.model.topic_labels, "urgency": loaded.model.urgency_levels},
                        metrics=metrics_summary(loaded.meta.get("metrics", {})), loaded_at=loaded.loaded_at)

    @app.get("/v1/model", response_model=ModelOut, tags=["operations"])
    def model_info(role: Annotated[str, Depends(need("model"))]) -> ModelOut:
        """The served model: version, label sets and held-out metrics."""
        return model_out(holder.current)

    @app.post("/v1/admin/reload", response_model=ModelOut, tags=["operations"])
    def reload(role: Annotated[str, Depends(need("admin"))]) -> ModelOut:
        """Load ``models/current`` again and swap it in; requests in flight finish on the old model.

        With several worker processes, the others follow within about a second.
        """
        loaded = holder.reload()
        holder.announce()
        return model_out(loaded)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers. No key needed."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """Readiness: the model is loaded and warm, and the store answers. No key needed."""
        problems = []
        if not holder.ready:
            problems.append("model not loaded")
        try:
            store().ping()
        except StorageError as exc:
            problems.append(str(exc))
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready", "model_version": holder.current.model.version})

    return app


def _unicode(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"query parameter {name} is not valid Unicode") from exc


def metrics_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a model's metrics (no per-example texts)."""
    out: dict[str, Any] = {"split": metrics.get("split")}
    topic = metrics.get("topic", {})
    if "test" in topic:
        t = topic["test"]
        out["topic"] = {k: t.get(k) for k in ("micro_f1", "macro_f1", "rows", "labels_scored")}
        out["topic"]["ece"] = topic.get("calibration", {}).get("ece")
    urgency = metrics.get("urgency")
    if urgency:
        out["urgency"] = {name: {k: v for k, v in part.items() if k != "confusion"}
                          for name, part in urgency.items() if isinstance(part, dict)}
        out["urgency"]["high_threshold"] = urgency.get("high_threshold")
    return out


def app_from_env() -> FastAPI:
    """The app built from ``TRIAGE_*`` environment variables: what each uvicorn worker process runs."""
    from triage.config import get_settings

    return create_app(get_settings())
