"""The JSON API's routes, one ``APIRouter`` per resource: triage, cases (with review and workflow), operations.

A thin shell over the case service (``triage.cases``): each route takes what it needs through the
typed dependencies of ``triage.deps`` (the caller's role, the store, the served model, the
service) and turns the result into a response model of ``triage.schemas``. The app that mounts
these routes beside the review pages is built in ``triage.app``. Who may call what is
``triage.auth.PERMISSIONS``: intake may triage; reviewer may read, correct and move cases; admin
may do everything and reload the model; an agency key reads and moves only its own agency's cases
(``triage.cases.own_case``, ``check_agency_move``). Raw complaint text and reporter contacts never
reach a log line.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from triage.auth import agency_of
from triage.cases import Cases, check_text, metrics_summary, own_case
from triage.deps import CasesDep, HolderDep, ServedDep, SettingsDep, StoreDep, get_store, need
from triage.errors import ForbiddenError, InputError, StorageError, TooLargeError
from triage.schemas import (
    BatchIn,
    BatchOut,
    CaseList,
    CaseOut,
    ComplaintIn,
    CorrectionIn,
    EventOut,
    HistoryOut,
    ModelOut,
    QueueOut,
    StatusIn,
    TriageOut,
)
from triage.security import scrub_prediction
from triage.serving import Served
from triage.sla import is_overdue

CaseId = Annotated[int, PathParam(ge=1, le=2**62, description="The case id")]


# -- triage ---------------------------------------------------------------------------------------

triage_routes = APIRouter(tags=["triage"])


def triage_out(case: dict[str, Any], created: bool) -> TriageOut:
    """A stored case as the answer to its triage."""
    pred = case["prediction"]
    return TriageOut(
        case_id=case["id"], external_id=case["external_id"], created=created, topics=case["topics"],
        topic_scores=pred.get("topic_scores", {}), urgency=case["urgency"],
        urgency_scores=pred.get("urgency_scores", {}), urgency_cues=pred.get("urgency_cues", []),
        agencies=case["agencies"], agency_scores=pred.get("agency_scores", {}),
        agency_candidates=pred.get("agency_candidates") or [], agency_explanation=pred.get("agency_explanation") or {},
        needs_review=case["needs_review"], review_reasons=case["review_reasons"],
        explanation=pred.get("explanation", []), model_version=case["model_version"], status=case["status"],
        tracking_code=case.get("tracking_code"),
    )


def triage_json(case: dict[str, Any], created: bool) -> bytes:
    """``triage_out(case, created)`` as JSON bytes, built directly (the hot path skips the pydantic model)."""
    pred = case["prediction"]
    return orjson.dumps({
        "case_id": case["id"], "external_id": case["external_id"], "created": created, "topics": case["topics"],
        "topic_scores": pred.get("topic_scores") or {}, "urgency": case["urgency"],
        "urgency_scores": pred.get("urgency_scores") or {}, "urgency_cues": pred.get("urgency_cues") or [],
        "agencies": case["agencies"], "agency_scores": pred.get("agency_scores") or {},
        "agency_candidates": pred.get("agency_candidates") or [],
        "agency_explanation": pred.get("agency_explanation") or {},
        "needs_review": case["needs_review"], "review_reasons": case["review_reasons"],
        "explanation": pred.get("explanation") or [], "model_version": case["model_version"], "status": case["status"],
        "tracking_code": case.get("tracking_code"),
    }, option=orjson.OPT_NON_STR_KEYS)


def triage_answers(cases: Cases, items: Sequence[ComplaintIn]) -> list[tuple[bytes, bool] | Exception]:
    """One micro-batch of ``POST /v1/triage`` requests (``triage.batching``, on its worker thread): each
    request's answer as JSON bytes and whether its case is new, or its own error. Cases are committed."""
    return [r if isinstance(r, Exception) else (triage_json(*r), r[1]) for r in cases.triage_each(items)]


def triage_many(cases: Cases, items: list[ComplaintIn]) -> list[TriageOut]:
    return [triage_out(case, created) for case, created in cases.triage(items)]


@triage_routes.post("/v1/triage", response_model=TriageOut,
                    responses={200: {"description": "The external_id was known: the stored case"}, 201: {}})
async def triage(body: ComplaintIn, request: Request, role: Annotated[str, Depends(need("triage"))]) -> Response:
    """Triage one complaint and store it as a case (201), or return the known case for its external_id (200).

    Concurrent requests are predicted and stored together (micro-batches of at most TRIAGE_BATCH_MAX,
    waiting at most TRIAGE_BATCH_WAIT_MS for each other); the answer comes after the case is committed.
    A 503 with Retry-After when TRIAGE_BATCH_QUEUE requests are already waiting.
    """
    check_text(body.text, request.app.state.settings.max_text_chars)
    data, created = await request.app.state.batcher.submit(body)
    return Response(data, status_code=201 if created else 200, media_type="application/json")


@triage_routes.post("/v1/triage/batch", response_model=BatchOut)
def triage_batch(body: BatchIn, role: Annotated[str, Depends(need("triage"))], settings: SettingsDep,
                 cases: CasesDep) -> BatchOut:
    """Triage up to TRIAGE_MAX_BATCH complaints in one call; all are stored or none."""
    if len(body.items) > settings.max_batch:
        raise TooLargeError(f"batch has {len(body.items)} complaints; at most {settings.max_batch} are allowed "
                            "(TRIAGE_MAX_BATCH)")
    return BatchOut(results=triage_many(cases, body.items))


# -- cases ----------------------------------------------------------------------------------------

case_routes = APIRouter()


def case_out(case: dict[str, Any], with_text: bool, role: str = "reviewer") -> CaseOut:
    """A case for a response: raw text only where asked for, the reporter's contact only for admins."""
    data = {k: case[k] for k in CaseOut.model_fields
            if k in case and k not in ("text", "reporter_contact", "overdue")}
    data["prediction"] = scrub_prediction(case["prediction"], case["text"])  # also cases stored before names were
    return CaseOut(**data, text=case["text"] if with_text else None,
                   reporter_contact=case.get("reporter_contact") if role == "admin" else None,
                   overdue=is_overdue(case.get("deadline"), case["status"], datetime.now(UTC)))


def _unicode(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"query parameter {name} is not valid Unicode") from exc


@case_routes.get("/v1/cases/{case_id}", response_model=CaseOut, tags=["cases"])
def get_case(case_id: CaseId, role: Annotated[str, Depends(need("read"))], store: StoreDep) -> CaseOut:
    """One case with its raw text, prediction and current labels (the reporter's contact for admins).

    An agency key reads only cases its agency holds now; another agency's case is a 404."""
    return case_out(own_case(role, store.get_case(case_id)), with_text=True, role=role)


@case_routes.get("/v1/cases", response_model=CaseList, tags=["cases"])
def list_cases(role: Annotated[str, Depends(need("read"))], store: StoreDep, settings: SettingsDep,
               status: Annotated[str | None, Query(max_length=50)] = None,
               agency: Annotated[str | None, Query(max_length=200)] = None,
               urgency: Annotated[str | None, Query(max_length=50)] = None,
               needs_review: bool | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 50,
               cursor: Annotated[str | None, Query(max_length=30)] = None) -> CaseList:
    """Cases newest first, filtered; pass ``next_cursor`` back as ``cursor`` for the next page.

    An agency key lists only the cases its agency holds now (its ``agency`` filter is always its own)."""
    after = None
    if cursor is not None:
        if not cursor.isdigit() or int(cursor) > 2**62:
            raise InputError(f"cursor {cursor!r} is not one this API gave out")
        after = int(cursor)
    for name, value in (("status", status), ("agency", agency), ("urgency", urgency)):
        if value is not None:
            _unicode(name, value)
    own = agency_of(role)
    if own is not None:
        if agency is not None and agency != own:
            return CaseList(items=[], next_cursor=None)
        agency = own
    found, nxt = store.list_cases(status=status, agency=agency, urgency=urgency, needs_review=needs_review,
                                  limit=min(limit, settings.page_limit), cursor=after)
    return CaseList(items=[case_out(c, with_text=False) for c in found], next_cursor=None if nxt is None else str(nxt))


@case_routes.get("/v1/review/queue", response_model=QueueOut, tags=["review"])
def review_queue(role: Annotated[str, Depends(need("read"))], store: StoreDep, settings: SettingsDep,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> QueueOut:
    """Open cases that need a person: overdue first, then most urgent, then oldest (not for agency keys)."""
    if agency_of(role) is not None:
        raise ForbiddenError("the review queue is for reviewers; an agency key lists its cases at /v1/cases")
    found, total = store.review_queue(min(limit, settings.page_limit), offset)
    return QueueOut(items=[case_out(c, with_text=False) for c in found], total=total)


@case_routes.post("/v1/cases/{case_id}/corrections", response_model=CaseOut, tags=["review"])
def correct(case_id: CaseId, body: CorrectionIn, role: Annotated[str, Depends(need("correct"))],
            cases: CasesDep) -> CaseOut:
    """Record a reviewer's correction (kept in an audit trail); the case's labels change and it leaves the queue."""
    case = cases.correct(case_id, body.reviewer, body.reason, body.topics, body.urgency, body.agencies)
    return case_out(case, with_text=True)


@case_routes.post("/v1/cases/{case_id}/status", response_model=CaseOut, tags=["cases"])
def change_status(case_id: CaseId, body: StatusIn, role: Annotated[str, Depends(need("status"))],
                  cases: CasesDep) -> CaseOut:
    """Move a case on: assign, start, forward to another agency, escalate to the central level, resolve, reject.

    ``note`` is internal; ``public_note`` shows on the complainant's tracking page and in the webhook.
    Forwarding or escalating resets the case's deadline. An agency key moves only its own cases, and
    only to: assigned (accept), in_progress, forwarded, escalated, resolved."""
    case = cases.move(case_id, body.status, body.agency, body.actor, body.note, public_note=body.public_note,
                      role=role)
    return case_out(case, with_text=True)


@case_routes.get("/v1/cases/{case_id}/history", response_model=HistoryOut, tags=["cases"])
def history(case_id: CaseId, role: Annotated[str, Depends(need("read"))], store: StoreDep) -> HistoryOut:
    """Every step of a case, oldest first, so the complainant can be told where it stands."""
    case = own_case(role, store.get_case(case_id))
    events = store.history(case_id)
    return HistoryOut(case_id=case_id, status=case["status"], agency=case["agency"],
                      events=[EventOut(**e) for e in events])


# -- model and operations -------------------------------------------------------------------------

operation_routes = APIRouter(tags=["operations"])


def model_out(served: Served) -> ModelOut:
    return ModelOut(version=served.model.version, created=served.meta.get("created"),
                    labels={"topic": served.model.topic_labels, "urgency": served.model.urgency_levels},
                    metrics=metrics_summary(served.meta.get("metrics", {})), loaded_at=served.loaded_at)


@operation_routes.get("/v1/model", response_model=ModelOut)
def model_info(role: Annotated[str, Depends(need("model"))], served: ServedDep) -> ModelOut:
    """The served model: version, label sets and held-out metrics."""
    return model_out(served)


@operation_routes.post("/v1/admin/reload", response_model=ModelOut)
def reload(role: Annotated[str, Depends(need("admin"))], holder: HolderDep) -> ModelOut:
    """Load ``models/current`` again and swap it in; requests in flight finish on the old model.

    With several worker processes, the others follow within about a second.
    """
    served = holder.reload()
    holder.announce()
    return model_out(served)


@operation_routes.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers. No key needed."""
    return {"status": "ok"}


@operation_routes.get("/readyz")
def readyz(request: Request, holder: HolderDep) -> JSONResponse:
    """Readiness: the model is loaded and warm, and the store answers. No key needed."""
    problems = []
    if not holder.ready:
        problems.append("model not loaded")
    try:
        get_store(request).ping()
    except StorageError as exc:
        problems.append(str(exc))
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready", "model_version": holder.current.model.version})
