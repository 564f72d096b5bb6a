"""The complainant's side, no key needed: where the case stands, and a rating once it is resolved.

    GET  /v1/track/{code}            {"status", "agency", "updated_at", "deadline", "steps": [...]}
    POST /v1/track/{code}/feedback   {"stars": 1-5, "comment"?, "reopen"?} after the case is resolved
    GET  /track/{code}               the same as a Thai page, with the rating form once resolved
    POST /track/{code}/feedback      that form

The tracking code is the only key, so these show only ``triage.tracking.public_view`` (never the
text, the contact, internal notes, staff names or another case) and every lookup, found or not,
costs the client a token of its rate limit (``TRIAGE_TRACK_RATE_PER_MINUTE``, 429 when spent).
An unknown code is a 404 whatever its shape. The complainant's comment is stored, never logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from triage.deps import StoreDep
from triage.errors import ConflictError, NotFoundError
from triage.limits import RateLimiter
from triage.schemas import FeedbackIn, TrackOut
from triage.sla import is_overdue
from triage.tracking import looks_like_code, public_view

log = logging.getLogger("triage.public")

router = APIRouter()
PACKAGE = Path(__file__).resolve().parent
Code = Annotated[str, PathParam(description="The tracking code given when the complaint was filed")]
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
BANGKOK = timezone(timedelta(hours=7))
MONTHS_TH = ["ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."]
STATUS_PUBLIC_TH = {
    "new": "รับเรื่องแล้ว รอหน่วยงานรับเรื่อง", "assigned": "หน่วยงานรับเรื่องแล้ว", "in_progress": "กำลังดำเนินการ",
    "forwarded": "ส่งต่อให้หน่วยงานที่รับผิดชอบ", "escalated": "ส่งเรื่องถึงหน่วยงานระดับสูงขึ้น",
    "resolved": "ดำเนินการเสร็จสิ้น", "rejected": "ไม่อยู่ในอำนาจหน้าที่ / ปิดเรื่อง",
}


class NotTracked(NotFoundError):
    """No case has this tracking code."""


def thai_time(iso: str | None) -> str:
    """``2026-12-01T07:05:00+00:00`` -> ``1 ธ.ค. 2569 14:05 น.`` (Bangkok time, Buddhist year)."""
    if not iso:
        return "–"
    at = datetime.fromisoformat(iso).astimezone(BANGKOK)
    return f"{at.day} {MONTHS_TH[at.month - 1]} {at.year + 543} {at:%H:%M} น."


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["thai_time"] = thai_time
    env.globals.update(STATUS=STATUS_PUBLIC_TH)
    return env


def _protect(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the code is in the URL: never send it elsewhere
    return response


def _page(status: int, **context: Any) -> HTMLResponse:
    context.setdefault("view", None)
    context.setdefault("code", "")
    context.setdefault("message", None)
    context.setdefault("can_rate", False)
    context.setdefault("overdue", False)
    html = _env().get_template("track.html").render(**context)
    response = HTMLResponse(html, status_code=status)
    _protect(response)
    return response


def _limited(request: Request) -> float | None:
    """Seconds to wait when this client has used up its tracking lookups, else None (a token is taken)."""
    limiter: RateLimiter = request.app.state.track_limiter
    client = request.client.host if request.client else "unknown"
    allowed, wait = limiter.allow(client)
    return None if allowed else max(1.0, wait)


def _too_many(wait: float) -> JSONResponse:
    return JSONResponse({"error": f"too many tracking requests from this address; try again in {int(wait) + 1} s",
                         "detail": None}, status_code=429, headers={"Retry-After": str(int(wait) + 1)})


def _lookup(store: Any, code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(case, public view) for a code; NotTracked for any code no case has."""
    code = code.strip().upper()  # read over the phone or typed in lower case: the same code
    case = store.find_tracking(code) if looks_like_code(code) else None
    if case is None:
        raise NotTracked("no case has this tracking code")
    return case, public_view(case, store.events_for(case["id"]))


def _feedback(request: Request, store: Any, code: str, body: FeedbackIn) -> dict[str, Any]:
    case, _ = _lookup(store, code)
    store.add_feedback(case["id"], body.stars, body.comment, body.reopen)
    if body.reopen:
        request.app.state.wake_delivery()
    log.info("case %d rated %d stars by the complainant%s", case["id"], body.stars, ", reopened" if body.reopen else "")
    return _lookup(store, code)[1]


@router.get("/v1/track/{code}", response_model=TrackOut, tags=["tracking"])
def track(request: Request, code: Code, store: StoreDep) -> Any:
    """Where a case stands, for anyone holding its tracking code (no key): status, agency, deadline and the
    steps with the notes staff marked public. Unknown code: 404. Rate limited per client (429)."""
    wait = _limited(request)
    if wait is not None:
        return _too_many(wait)
    return _lookup(store, code)[1]


@router.post("/v1/track/{code}/feedback", response_model=TrackOut, tags=["tracking"])
def feedback(request: Request, code: Code, body: FeedbackIn, store: StoreDep) -> Any:
    """The complainant's rating (1-5 stars, a comment) of a resolved case, once per resolution; ``reopen``
    gives the case back to the agency that resolved it (409 before it is resolved)."""
    wait = _limited(request)
    if wait is not None:
        return _too_many(wait)
    return _feedback(request, store, code, body)


@router.get("/track/static/track.css", include_in_schema=False)
def stylesheet() -> Response:
    response = Response((PACKAGE / "static" / "track.css").read_bytes(), media_type="text/css; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


MESSAGES = {
    "thanks": ("ok", "ขอบคุณสำหรับความคิดเห็น"),
    "reopened": ("ok", "ขอบคุณ เรื่องของท่านถูกส่งกลับไปยังหน่วยงานเพื่อดำเนินการอีกครั้ง"),
}


@router.get("/track/{code}", include_in_schema=False)
def track_page(request: Request, code: Code, store: StoreDep, msg: str = "") -> Response:
    """The Thai page a complainant opens from the link with their code."""
    wait = _limited(request)
    if wait is not None:
        return _page(429, message=("error", f"มีการเรียกดูจากที่อยู่นี้บ่อยเกินไป กรุณาลองใหม่ในอีก {int(wait) + 1} วินาที"))
    try:
        _, view = _lookup(store, code)
    except NotTracked:
        return _page(404, message=("error", "ไม่พบเรื่องตามรหัสติดตามนี้ กรุณาตรวจสอบรหัสอีกครั้ง"))
    can_rate = view["status"] == "resolved"
    overdue = is_overdue(view["deadline"], view["status"], datetime.now(UTC))
    return _page(200, view=view, code=code, can_rate=can_rate, overdue=overdue, message=MESSAGES.get(msg))


@router.post("/track/{code}/feedback", include_in_schema=False)
async def track_page_feedback(request: Request, code: Code, store: StoreDep) -> Response:
    """The rating form of the page (url-encoded: stars, comment, reopen)."""
    raw = await request.body()
    return await run_in_threadpool(_page_feedback, request, store, code, raw)


def _page_feedback(request: Request, store: Any, code: str, raw: bytes) -> Response:
    wait = _limited(request)
    if wait is not None:
        return _page(429, message=("error", f"มีการส่งบ่อยเกินไป กรุณาลองใหม่ในอีก {int(wait) + 1} วินาที"))
    try:
        form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20))
    except (UnicodeDecodeError, ValueError):
        form = {}
    try:
        body = FeedbackIn.model_validate({"stars": form.get("stars") or 0, "reopen": form.get("reopen") == "1",
                                          "comment": (form.get("comment") or "").strip() or None})
    except ValidationError:
        body = None
    try:
        _, view = _lookup(store, code)
        if body is None:
            return _page(422, view=view, code=code, can_rate=view["status"] == "resolved",
                         message=("error", "กรุณาเลือกคะแนน 1-5 ดาว (ความคิดเห็นยาวไม่เกิน 2,000 ตัวอักษร)"))
        _feedback(request, store, code, body)
    except NotTracked:
        return _page(404, message=("error", "ไม่พบเรื่องตามรหัสติดตามนี้ กรุณาตรวจสอบรหัสอีกครั้ง"))
    except ConflictError:
        _, view = _lookup(store, code)
        return _page(409, view=view, code=code, can_rate=False,
                     message=("error", "ให้คะแนนเรื่องนี้ไปแล้ว หรือเรื่องยังไม่เสร็จสิ้น"))
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/track/{quote(code)}?msg={'reopened' if body.reopen else 'thanks'}", status_code=303)
    _protect(response)
    return response
