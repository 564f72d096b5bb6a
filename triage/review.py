"""The review pages: a server-rendered UI at ``/review`` for the people who correct misrouted cases.

A thin shell over the case service (``triage.cases``), like the JSON API (``triage.api``); the app
(``triage.app``) mounts both, and they share only the service and the dependencies of
``triage.deps``. Pages: login, the review queue, one case (correct, forward, escalate,
history) and an overview (counts, waiting times, correction rates, the model's metrics).

Access: a reviewer or admin API key, given once on the login form, starts a session: a row in
the case store (``triage.store_sessions``) named by a random id that travels in a signed cookie
(HttpOnly, SameSite=Strict, path ``/review``, 12 hours). The cookie holds neither the key nor a
hash of it. Every request looks the session up and checks that its key is still configured with
a role that may read cases (``triage.auth``: reviewer or admin), so a logout, or removing a key
from ``TRIAGE_API_KEYS``, ends it. Wrong keys and failed logins are throttled per client
(``triage.deps.check_key``, ``triage.limits.FailureLimiter``).
Scripts may send ``X-API-Key`` instead. Intake keys are refused. Every form carries a CSRF token
tied to the session, and a case form carries the case's version (``updated_at``): saving a form
that another reviewer or tab has overtaken changes nothing and says so, keeping what was typed.
The signing secret (also the key of key fingerprints) is ``TRIAGE_SECRET_KEY`` or a random file in
the data dir, shared by the server's worker processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from pythainlp.util import collate
from starlette.concurrency import run_in_threadpool

from triage.auth import fingerprint, key_for_hmac, key_hmac, may, role_for_key
from triage.cases import Cases, metrics_summary
from triage.config import Settings
from triage.deps import CasesDep, SettingsDep, check_key, client_of, failure_limiter, get_settings, get_store
from triage.errors import (
    ConflictError,
    InputError,
    LabelError,
    NotFoundError,
    Refused,
    StaleError,
    ThrottledError,
    TriageError,
    http_status,
)
from triage.security import has_control, log_safe, scrub_prediction
from triage.sla import is_overdue
from triage.store import STATUSES, TRANSITIONS
from triage.store_sessions import private_dir
from triage.text import mask_personal

log = logging.getLogger("triage.review")

router = APIRouter(prefix="/review", include_in_schema=False)

COOKIE = "triage_review"
LOGIN_COOKIE = "triage_review_login"
SESSION_SECONDS = 12 * 3600
REVIEW_PERMISSION = "review"
"""What a key's role needs to use the review pages (``triage.auth.PERMISSIONS``: reviewer and admin)."""
PACKAGE = Path(__file__).resolve().parent
STATIC = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")

STATUS_TH = {"new": "รอรับเรื่อง", "assigned": "มอบหมายแล้ว", "in_progress": "กำลังดำเนินการ", "forwarded": "ส่งต่อ",
             "escalated": "ส่งส่วนกลาง", "resolved": "เสร็จสิ้น", "rejected": "ไม่เกี่ยวข้อง"}
URGENCY_TH = {"high": "ด่วนมาก", "medium": "ปานกลาง", "low": "ไม่เร่งด่วน"}
REASON_TH = {"low_confidence": "โมเดลไม่มั่นใจ · low confidence",
             "urgent_not_accepted": "เรื่องด่วนยังไม่มีผู้รับ · urgent, not accepted",
             "agency_uncertain": "หน่วยงานไม่แน่ชัด · agency uncertain",
             "agency_corrected_before": "เคยแก้หน่วยงานแบบนี้ · agency corrected before"}
ACCEPT_REASON = "ยืนยันผลของโมเดล (accepted as predicted)"
AGENCY_LIST = "(ดูรายชื่อในช่องค้นหา · see the list in the field)"

# Flash messages a redirect may name (by code only, so a URL cannot inject text into a page).
MESSAGES: dict[str, tuple[str, str, str]] = {
    "saved": ("ok", "บันทึกการแก้ไขเรื่อง #{case} แล้ว", "Correction of case #{case} saved."),
    "accepted": ("ok", "ยืนยันเรื่อง #{case} แล้ว เรื่องออกจากคิว",
                 "Case #{case} accepted as predicted; it left the queue."),
    "moved": ("ok", "เปลี่ยนสถานะเรื่อง #{case} แล้ว", "Case #{case} moved on."),
    "conflict": ("conflict", ("เรื่อง #{case} ถูกแก้ไขโดยผู้อื่นหรือในแท็บอื่นหลังจากที่คุณเปิดหน้านี้ จึงยังไม่ได้บันทึก "
                 "โปรดเปิดเรื่องเพื่อดูสถานะล่าสุด"),
                 ("Case #{case} was changed by someone else (or in another tab) after you opened this page, so "
                 "nothing was saved. Open it to see where it stands now.")),
    "logged_out": ("ok", "ออกจากระบบแล้ว", "You are logged out."),
    "expired": ("error", "กรุณาเข้าสู่ระบบ (ยังไม่ได้เข้าระบบหรือหมดเวลา)", "Please log in (no session, or it expired)."),
}
CONFLICT_TH = ("เรื่องนี้ถูกแก้ไขโดยผู้อื่นหรือในแท็บอื่น หลังจากที่คุณเปิดหน้านี้ การแก้ไขของคุณยังไม่ได้บันทึก "
               "แต่ยังอยู่ในแบบฟอร์มด้านล่าง ตรวจดูสถานะและประวัติล่าสุด แล้วกดบันทึกอีกครั้งหากยังต้องการ")
CONFLICT_EN = ("This case was changed by someone else (or in another tab) after you opened this page. Your changes "
               "were NOT saved; they are still in the form below. Check the current labels and the history, then "
               "save again if they are still right.")


# -- sessions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    role: str
    name: str
    key_fp: str
    csrf: str
    via_header: bool = False
    sid: str = ""

    @property
    def actor(self) -> str:
        """Who did it, for the audit trail: the name given at login and the key's label or keyed fingerprint."""
        return f"{self.name} (key {self.key_fp})"


def key_name(settings: Settings, key: str) -> str:
    """How a key is named in audit trails and logs (``triage.auth.fingerprint``): label, else keyed hash."""
    return fingerprint(session_secret(settings), key, settings.key_labels)


_secrets: dict[Path, bytes] = {}


def session_secret(settings: Settings) -> bytes:
    """The server secret for cookies and key fingerprints: from ``TRIAGE_SECRET_KEY`` when set, else
    ``<data_dir>/review-session.key``, made once (0600) and shared by workers."""
    if settings.secret_key:
        return hashlib.sha256(b"triage-server-secret\x00" + settings.secret_key.encode()).digest()
    path = (settings.data_dir / "review-session.key").resolve()
    if path in _secrets:
        return _secrets[path]
    if not path.exists():
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic: the first worker's secret wins, the others read it
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    secret = path.read_bytes()
    if len(secret) < 32:
        raise TriageError(f"session secret {path} is shorter than 32 bytes; delete it to make a new one")
    _secrets[path] = secret
    return secret


def sign(secret: bytes, data: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(data, ensure_ascii=False).encode()).decode().rstrip("=")
    mac = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def unsign(secret: bytes, value: str, max_age: int) -> dict[str, Any] | None:
    """The data of a cookie made by ``sign``, or None if it was altered, malformed or is older than max_age."""
    body, _, mac = value.rpartition(".")
    if not body or not hmac.compare_digest(hmac.new(secret, body.encode(), hashlib.sha256).hexdigest(), mac):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("iat"), int | float):
        return None
    if not 0 <= time.time() - data["iat"] <= max_age:
        return None
    return data


def current_session(request: Request) -> Session | None:
    """The caller's review session, from ``X-API-Key`` or the session cookie; None if there is none.

    Raises UnauthorizedError when an ``X-API-Key`` header is unknown, ForbiddenError when its role
    may not review (``triage.auth``), ThrottledError when its address sent too many wrong keys. A
    cookie counts only while its session row is live (not logged out, not expired) and its key is
    still configured with a role that may review.
    """
    settings = get_settings(request)
    keys = settings.keys
    header = request.headers.get("x-api-key")
    if header is not None:
        header_role = check_key(request, settings, header, REVIEW_PERMISSION)
        return Session(role=header_role, name="api", key_fp=key_name(settings, header) if keys else "dev", csrf="",
                       via_header=True)
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    secret = session_secret(settings)
    data = unsign(secret, raw, SESSION_SECONDS)
    if data is None or not isinstance(data.get("sid"), str):
        return None
    row = get_store(request).get_session(data["sid"])
    if row is None:
        return None
    if keys:
        key = key_for_hmac(keys, secret, row["key_hmac"])
        role = keys.get(key) if key is not None else None
        name = key_name(settings, key) if key is not None else ""
    else:
        role, name = role_for_key(keys, None), "dev"
    if role is None or not may(role, REVIEW_PERMISSION):
        return None
    return Session(role=role, name=row["name"], key_fp=name, csrf=str(data.get("csrf", "")), sid=data["sid"])


def check_csrf(session: Session, form: Mapping[str, list[str]]) -> bool:
    """Forms posted with a session cookie must carry its token (header-key callers are not a browser)."""
    if session.via_header:
        return True
    token = (form.get("csrf") or [""])[0]
    return bool(session.csrf) and hmac.compare_digest(token.encode(), session.csrf.encode())


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=_base(request), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


# -- rendering ------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * float(v):.0f}%"
    env.filters["num"] = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    env.globals.update(STATUS_TH=STATUS_TH, URGENCY_TH=URGENCY_TH, REASON_TH=REASON_TH)
    return env


def _base(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}/review"


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("session", None)
    context.setdefault("messages", [])
    context.setdefault("page", "")
    context.setdefault("dev_mode", not get_settings(request).keys)
    html = _env().get_template(template).render(base=_base(request), **context)
    response = HTMLResponse(html, status_code=status)
    _protect(response)
    return response


def _protect(response: Response) -> None:
    """Pages hold personal data: no caching, no framing, no sniffing, no referrer to other sites."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    _protect(response)
    return response


def flash(code: str | None, case: str | None) -> list[dict[str, str]]:
    if not code or code not in MESSAGES:
        return []
    kind, th, en = MESSAGES[code]
    n = case if case and case.isdigit() else "?"
    return [{"kind": kind, "th": th.format(case=n), "en": en.format(case=n)}]


def refused_page(request: Request, status: int, retry_after: int = 0) -> HTMLResponse:
    if status == http_status(ThrottledError(0)):
        response = render(request, "refused.html", status=status, messages=[throttled_message(retry_after)])
        response.headers["Retry-After"] = str(retry_after)
        return response
    if status == 403:
        th, en = ("กุญแจนี้ไม่มีสิทธิ์ตรวจทาน (ต้องเป็นบทบาท reviewer หรือ admin)",
                  "This key may not review cases: it needs the reviewer or admin role.")
    else:
        th, en = "ไม่รู้จักกุญแจนี้", "Unknown API key."
    return render(request, "refused.html", status=status, messages=[{"kind": "error", "th": th, "en": en}])


def need_session(request: Request) -> Session | Response:
    """The session, or the response that refuses the request: the login page for a browser, 401/403 for a key."""
    try:
        session = current_session(request)
    except Refused as exc:
        return refused_page(request, http_status(exc), getattr(exc, "retry_after", 0))
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = _base(request)
        return _redirect(f"{_base(request)}/login?" + urlencode({"next": target, "msg": "expired"}))
    return session


async def read_form(request: Request) -> dict[str, list[str]]:
    """A url-encoded form body as lists of values (the app's body limit already bounds its size)."""
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError("the form could not be read: it must be UTF-8 and url-encoded") from exc
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def one(form: Mapping[str, list[str]], name: str, limit: int = 2000) -> str:
    value = (form.get(name) or [""])[0].strip()
    if len(value) > limit:
        raise InputError(f"field {name} has {len(value)} characters; at most {limit} are allowed")
    return value


def safe_next(request: Request, target: str) -> str:
    """Where to go after login: only a review page of this site (no open redirect)."""
    base = _base(request)
    if target == base or (target.startswith(base + "/") and "//" not in target and "\\" not in target):
        return target
    return base


# -- static files, login, logout ------------------------------------------------------------------

@router.get("/static/{name}")
def static(name: str) -> Response:
    """The page's CSS and script (no personal data, so no login needed)."""
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    response = Response((PACKAGE / "static" / name).read_bytes(), media_type=STATIC[name])
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/login")
def login_form(request: Request, settings: SettingsDep, next: Annotated[str, Query(max_length=2000)] = "",
               msg: Annotated[str, Query(max_length=30)] = "") -> Response:
    """The login form; a CSRF token for it travels in a short-lived cookie of its own."""
    try:
        if current_session(request) is not None:
            return _redirect(safe_next(request, next))
    except Refused:
        pass
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", next=safe_next(request, next), csrf=token, name="",
                      messages=flash(msg, None))
    _set_cookie(response, request, LOGIN_COOKIE,
                sign(session_secret(settings), {"csrf": token, "iat": int(time.time())}), 3600)
    return response


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(_login, request, form, settings)


def _login(request: Request, form: dict[str, list[str]], settings: Settings) -> Response:
    secret = session_secret(settings)
    target = safe_next(request, one(form, "next"))
    name = one(form, "name", 80)
    pre = unsign(secret, request.cookies.get(LOGIN_COOKIE, ""), 3600)
    token = one(form, "csrf", 100)

    def again(status: int, th: str, en: str) -> Response:
        fresh = secrets.token_urlsafe(24)
        response = render(request, "login.html", status=status, next=target, csrf=fresh, name=name,
                          messages=[{"kind": "error", "th": th, "en": en}])
        _set_cookie(response, request, LOGIN_COOKIE, sign(secret, {"csrf": fresh, "iat": int(time.time())}), 3600)
        return response

    if pre is None or not token or not hmac.compare_digest(str(pre.get("csrf", "")), token):
        return again(400, "แบบฟอร์มหมดอายุ กรุณาลองอีกครั้ง", "The form expired; please try again.")
    keys = settings.keys
    client = client_of(request)
    limiter = failure_limiter(request, "logins")

    def throttled(wait: int) -> Response:
        log.warning("review login from client %s refused: too many failed logins", log_safe(client))
        message = throttled_message(wait)
        response = again(http_status(ThrottledError(wait)), message["th"], message["en"])
        response.headers["Retry-After"] = str(wait)
        return response

    wait = limiter.retry_after(client) if keys else None
    if wait is not None:
        return throttled(wait)
    key = one(form, "key", 500)
    role = role_for_key(keys, key)
    if role is None:
        wait = limiter.fail(client)
        if wait is not None:  # another worker counted this client's last allowed failures since the check
            return throttled(wait)
        log.warning("review login refused for client %s: unknown key", log_safe(client))
        return again(401, "ไม่รู้จักกุญแจนี้", "Unknown API key.")
    if not may(role, REVIEW_PERMISSION):
        log.warning("review login refused for client %s: a %s key", log_safe(client), log_safe(role))
        return again(403, "กุญแจนี้ไม่มีสิทธิ์ตรวจทาน (ต้องเป็นบทบาท reviewer หรือ admin)",
                     "This key may not review cases: it needs the reviewer or admin role.")
    if not name:
        return again(422, "กรุณากรอกชื่อผู้ตรวจทาน (บันทึกไว้ในประวัติการแก้ไข)",
                     "Please give your name: it goes into the audit trail.")
    if has_control(name):
        return again(422, "ชื่อต้องเป็นข้อความบรรทัดเดียว ไม่มีอักขระควบคุม",
                     "The name must be one line of text without control characters.")
    fp = key_name(settings, key) if keys else "dev"
    sid = secrets.token_urlsafe(32)
    get_store(request).create_session(sid, name, key_hmac(secret, key) if keys else "dev", fp, SESSION_SECONDS)
    response = _redirect(target)
    _set_cookie(response, request, COOKIE, sign(secret, {"sid": sid, "csrf": secrets.token_urlsafe(24),
                                                         "iat": int(time.time())}), SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path=_base(request), httponly=True, samesite="strict")
    log.info("review login: %s (%s, key %s)", log_safe(name), role, log_safe(fp))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    session = need_session(request)
    if isinstance(session, Response):
        return session
    if not check_csrf(session, form):
        return render(request, "refused.html", status=400, session=session, messages=[csrf_message()])
    if session.sid:
        await run_in_threadpool(get_store(request).revoke_session, session.sid)
        log.info("review logout: %s", log_safe(session.actor))
    response = _redirect(f"{_base(request)}/login?msg=logged_out")
    response.delete_cookie(COOKIE, path=_base(request), httponly=True, samesite="strict")
    return response


def throttled_message(seconds: int) -> dict[str, str]:
    return {"kind": "error", "th": f"ลองผิดหลายครั้งเกินไป กรุณารอ {seconds} วินาทีแล้วลองใหม่",
            "en": f"Too many failed attempts from this address; try again in {seconds} s."}


def csrf_message() -> dict[str, str]:
    return {"kind": "error", "th": "แบบฟอร์มนี้ไม่ถูกต้องหรือหมดอายุ (CSRF) กรุณาโหลดหน้าใหม่",
            "en": "This form is invalid or expired (CSRF check); reload the page."}


# -- the queue ------------------------------------------------------------------------------------

def age(created_at: str, now: datetime | None = None) -> dict[str, str]:
    """How long a case has waited, in Thai and English: ``{"th": "3 ชม.", "en": "3 h"}``."""
    now = now or datetime.now(UTC)
    seconds = max(0, int((now - datetime.fromisoformat(created_at)).total_seconds()))
    if seconds < 3600:
        n = seconds // 60
        return {"th": f"{n} นาที", "en": f"{n} min"}
    if seconds < 2 * 86400:
        n = seconds // 3600
        return {"th": f"{n} ชม.", "en": f"{n} h"}
    n = seconds // 86400
    return {"th": f"{n} วัน", "en": f"{n} d"}


def due(deadline: str, now: datetime) -> dict[str, str]:
    """How far a deadline is, ahead or past, in the same words as ``age``."""
    at = datetime.fromisoformat(deadline)
    return age((now - abs(at - now)).isoformat(), now)


def case_view(case: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a page shows of a case: the model's prediction with its confidences, how long it has waited and
    how far its deadline is."""
    pred = scrub_prediction(case["prediction"], case["text"])  # names masked, also in cases stored before
    topic_scores = pred.get("topic_scores") or {}
    agency_scores = pred.get("agency_scores") or {}
    urgency_scores = pred.get("urgency_scores") or {}
    return {
        **case,
        "prediction": pred,
        "age": age(case["created_at"], now),
        "pred_topics": [(t, topic_scores.get(t)) for t in pred.get("topics") or []],
        "pred_urgency": (pred.get("urgency"), urgency_scores.get(pred.get("urgency") or "")),
        "pred_agencies": [(a, agency_scores.get(a)) for a in pred.get("agencies") or []],
        "words": [e.get("token") for e in pred.get("explanation") or [] if e.get("token")],
        "cues": pred.get("urgency_cues") or [],
        "candidates": [(c.get("agency"), c.get("score")) for c in pred.get("agency_candidates") or []],
        "agency_decision": (pred.get("agency_explanation") or {}).get("decision", ""),
        "overdue": is_overdue(case.get("deadline"), case["status"], now),
        "due": due(case["deadline"], now) if case.get("deadline") else None,
    }


Filter = Annotated[str, Query(max_length=200)]


@router.get("")
def queue(request: Request, cases: CasesDep, settings: SettingsDep, agency: Filter = "", urgency: Filter = "", district: Filter = "", status: Filter = "",
          page: Annotated[int, Query(ge=0, le=100_000)] = 0, msg: Annotated[str, Query(max_length=30)] = "",
          case: Annotated[str, Query(max_length=20)] = "",
          focus: Annotated[int, Query(ge=0, le=1000)] = 0) -> Response:
    """The review queue, most urgent first, then oldest; text masked; filters; keyboard shortcuts."""
    session = need_session(request)
    if isinstance(session, Response):
        return session
    store = cases.store
    limit = settings.page_limit
    filters = {"agency": agency, "urgency": urgency, "district": district, "status": status}
    found, total = store.review_queue_filtered(limit, page * limit, **filters)
    now = datetime.now(UTC)
    here = urlencode({k: v for k, v in {**filters, "page": page or ""}.items() if v})
    return render(request, "queue.html", session=session, messages=flash(msg, case), page="queue",
                  cases=[case_view(c, now) for c in found], total=total, filters=filters,
                  facets=store.queue_facets(), page_no=page, limit=limit, here=here,
                  focus=min(focus, max(len(found) - 1, 0)),
                  prev_url=_page_url(request, filters, page - 1) if page > 0 else None,
                  next_url=_page_url(request, filters, page + 1) if (page + 1) * limit < total else None)


def _page_url(request: Request, filters: dict[str, str], page: int) -> str:
    query = urlencode({k: v for k, v in {**filters, "page": page or ""}.items() if v})
    return _base(request) + (f"?{query}" if query else "")


CaseId = Annotated[int, PathParam(ge=1, le=2**62)]


@router.post("/cases/{case_id}/accept")
async def accept(request: Request, case_id: CaseId, cases: CasesDep) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(_accept, request, case_id, form, cases)


def _accept(request: Request, case_id: int, form: dict[str, list[str]], cases: Cases) -> Response:
    """Confirm the model's topics and urgency as they are: the case leaves the queue (kept in the audit trail)."""
    session = need_session(request)
    if isinstance(session, Response):
        return session
    if not check_csrf(session, form):
        return render(request, "refused.html", status=400, session=session, messages=[csrf_message()])
    back = dict(parse_qsl(one(form, "back", 2000)))
    back = {k: v for k, v in back.items() if k in ("agency", "urgency", "district", "status", "page")}
    focus = one(form, "focus", 10)
    try:
        if cases.accept(case_id, one(form, "version", 100), session.actor, ACCEPT_REASON) is None:
            return render(request, "refused.html", status=422, session=session, messages=[{
                "kind": "error", "th": f"เรื่อง #{case_id} ไม่มีผลให้ยืนยัน เปิดเรื่องเพื่อแก้ไข",
                "en": f"Case {case_id} has no labels to accept; open it to correct it."}])
        back.update(msg="accepted", case=str(case_id))
    except StaleError:
        back.update(msg="conflict", case=str(case_id))
    except NotFoundError:
        return not_found(request, session, case_id)
    if focus.isdigit():
        back["focus"] = focus
    return _redirect(f"{_base(request)}?{urlencode(back)}")


def not_found(request: Request, session: Session, case_id: int) -> HTMLResponse:
    return render(request, "refused.html", status=http_status(NotFoundError()), session=session,
                  messages=[{"kind": "error", "th": f"ไม่พบเรื่อง #{case_id}", "en": f"Case {case_id} does not exist."}])


# -- one case -------------------------------------------------------------------------------------

def agency_choices(cases: Cases, case: dict[str, Any]) -> tuple[list[str], bool]:
    """Agency names to offer (Thai, sorted) and whether only those are allowed.

    From the router's agency directory when it has one (then a correction must use them); else
    the escalation level and the agencies seen in cases.
    """
    names = cases.agency_names
    if names is not None:
        return collate(list(names)), True
    seen: set[str] = {cases.escalation_agency, *case["agencies"], *case["agency_path"]}
    seen.update(cases.store.queue_facets().get("agency", []))
    return collate([s for s in seen if s]), False


def case_page(request: Request, cases: Cases, session: Session, case_id: int, status: int = 200,
              messages: list[dict[str, str]] | None = None, draft: dict[str, Any] | None = None,
              move_draft: dict[str, str] | None = None) -> HTMLResponse:
    """The case page; ``draft`` keeps a reviewer's unsaved correction (after a conflict or a bad value)."""
    store = cases.store
    case = store.get_case(case_id)
    model = cases.served.model
    now = datetime.now(UTC)
    view = case_view(case, now)
    choices, closed_list = agency_choices(cases, case)
    if draft is None:
        draft = {"topics": case["topics"], "urgency": case["urgency"], "agencies": case["agencies"], "reason": ""}
    agencies = list(draft["agencies"]) + [""] * max(0, 3 - len(draft["agencies"]))
    queue_next, _ = store.review_queue_filtered(2, 0)
    next_id = next((c["id"] for c in queue_next if c["id"] != case_id), None)
    return render(request, "case.html", status=status, session=session, messages=messages or [], page="case",
                  case=view, text=case["text"], topics=model.topic_labels,
                  urgencies=model.urgency_levels, agency_names=choices, closed_list=closed_list,
                  draft=draft, draft_agencies=agencies, move=move_draft or {},
                  transitions=TRANSITIONS.get(case["status"], ()), history=store.history(case_id),
                  corrections=store.corrections(case_id), escalation_agency=cases.escalation_agency,
                  next_id=next_id, feedback=[{**f, "comment": mask_personal(f["comment"]) if f["comment"] else None}
                                             for f in store.feedback_for(case_id)])


@router.get("/cases/{case_id}")
def show_case(request: Request, case_id: CaseId, cases: CasesDep,
              msg: Annotated[str, Query(max_length=30)] = "") -> Response:
    """One case with its raw text (the reviewer opened it), the model's prediction, correction and workflow forms."""
    session = need_session(request)
    if isinstance(session, Response):
        return session
    try:
        response = case_page(request, cases, session, case_id, messages=flash(msg, str(case_id)))
    except NotFoundError:
        return not_found(request, session, case_id)
    log.info("case %d opened for review by %s", case_id, log_safe(session.actor))
    return response


@router.post("/cases/{case_id}/correct")
async def correct(request: Request, case_id: CaseId, cases: CasesDep) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(_correct, request, case_id, form, cases)


def _changed(new: list[str], old: list[str], ordered: bool) -> list[str] | None:
    """``new`` if it differs from ``old`` (as a set, or as a list when order matters), else None."""
    same = new == old if ordered else set(new) == set(old)
    return None if same else new


def _correct(request: Request, case_id: int, form: dict[str, list[str]], cases: Cases) -> Response:
    """Save a correction of only what changed; nothing changed means the reviewer confirms the labels."""
    session = need_session(request)
    if isinstance(session, Response):
        return session
    if not check_csrf(session, form):
        return render(request, "refused.html", status=400, session=session, messages=[csrf_message()])
    store = cases.store
    try:
        case = store.get_case(case_id)
    except NotFoundError:
        return not_found(request, session, case_id)
    topics = list(dict.fromkeys(v.strip() for v in form.get("topics", []) if v.strip()))
    urgency = one(form, "urgency", 200) or None
    agencies = list(dict.fromkeys(v.strip() for v in form.get("agencies", []) if v.strip()))
    reason = one(form, "reason", 2000)
    draft = {"topics": topics, "urgency": urgency, "agencies": agencies, "reason": reason}

    def again(status: int, th: str, en: str, kind: str = "error") -> HTMLResponse:
        return case_page(request, cases, session, case_id, status=status, draft=draft,
                         messages=[{"kind": kind, "th": th, "en": en}])

    if not reason:
        return again(422, "กรุณาระบุเหตุผลของการแก้ไข", "Please give a reason for the correction.")
    if not topics:
        return again(422, "เลือกหัวข้ออย่างน้อยหนึ่งหัวข้อ", "Choose at least one topic.")
    if len(topics) > 20 or len(agencies) > 10 or any(len(v) > 200 for v in topics + agencies):
        return again(422, "ค่าที่ส่งมายาวหรือมากเกินไป", "Too many or too long values.")
    new_topics = _changed(topics, case["topics"], ordered=False)
    new_urgency = urgency if urgency != case["urgency"] else None
    new_agencies = _changed(agencies, case["agencies"], ordered=True) if agencies else None
    if new_topics is None and new_urgency is None and new_agencies is None:
        new_topics, new_urgency = topics, urgency  # a confirmation: recorded, and the case leaves the queue
    try:
        cases.correct(case_id, session.actor, reason, new_topics or None, new_urgency, new_agencies,
                      version=one(form, "version", 100))
    except StaleError as exc:
        return again(http_status(exc), CONFLICT_TH, CONFLICT_EN, kind="conflict")
    except LabelError as exc:
        # the page lists the allowed agencies in its search field, not in the message
        en = str(LabelError(exc.kind, exc.label, [AGENCY_LIST])) if exc.kind == "agency" else str(exc)
        return again(http_status(exc), f"ค่าไม่ถูกต้อง: {exc.kind} {exc.label!r} ไม่อยู่ในรายการที่เลือกได้", en)
    if one(form, "then", 20) == "next":
        following, _ = store.review_queue_filtered(1, 0)
        if following:
            return _redirect(f"{_base(request)}/cases/{following[0]['id']}?msg=saved")
        return _redirect(f"{_base(request)}?msg=saved&case={case_id}")
    return _redirect(f"{_base(request)}/cases/{case_id}?msg=saved")


@router.post("/cases/{case_id}/status")
async def move(request: Request, case_id: CaseId, cases: CasesDep) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(_move, request, case_id, form, cases)


def _move(request: Request, case_id: int, form: dict[str, list[str]], cases: Cases) -> Response:
    """Forward the case to another agency, escalate it to the central level, or another workflow step."""
    session = need_session(request)
    if isinstance(session, Response):
        return session
    if not check_csrf(session, form):
        return render(request, "refused.html", status=400, session=session, messages=[csrf_message()])
    action = one(form, "action", 20)
    agency = one(form, "agency", 200) or None
    note = one(form, "note", 2000) or None
    public_note = one(form, "public_note", 2000) or None
    status = {"forward": "forwarded", "escalate": "escalated"}.get(action) or one(form, "status", 20)
    draft = {"action": action, "agency": agency or "", "note": note or "", "status": status,
             "public_note": public_note or ""}

    def again(code: int, th: str, en: str, kind: str = "error") -> HTMLResponse:
        return case_page(request, cases, session, case_id, status=code, move_draft=draft,
                         messages=[{"kind": kind, "th": th, "en": en}])

    try:
        cases.store.get_case(case_id)
    except NotFoundError:
        return not_found(request, session, case_id)
    try:
        cases.move(case_id, status, agency, session.actor, note, version=one(form, "version", 100),
                   public_note=public_note)
    except InputError as exc:
        if status not in STATUSES:
            return again(http_status(exc), "เลือกสถานะที่ต้องการ", str(exc))
        return again(http_status(exc), "การส่งต่อต้องระบุหน่วยงานปลายทาง", "Forwarding needs the agency the case goes to.")
    except LabelError as exc:
        return again(http_status(exc), f"ไม่รู้จักหน่วยงาน {exc.label!r} ในสารบบหน่วยงาน",
                     f"agency {exc.label!r} is not in the agency directory")
    except StaleError as exc:
        return again(http_status(exc), CONFLICT_TH, CONFLICT_EN, kind="conflict")
    except ConflictError as exc:
        return again(http_status(exc), "ทำไม่ได้: ขั้นตอนนี้ไม่ได้รับอนุญาตจากสถานะปัจจุบัน หรือจะทำให้ส่งต่อวนซ้ำ", str(exc))
    return _redirect(f"{_base(request)}/cases/{case_id}?msg=moved")


# -- overview -------------------------------------------------------------------------------------

AGE_BUCKETS = [("1 ชม.", "1 h", timedelta(hours=1)), ("1 วัน", "1 d", timedelta(days=1)),
               ("3 วัน", "3 d", timedelta(days=3)), ("7 วัน", "7 d", timedelta(days=7))]
CHART_WEEKS = 12
CHART_SERIES = 6
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
DASHES = ["", "6 3", "2 3", "8 3 2 3", "4 4", "1 2", ""]


def rate_chart(rows: list[dict[str, Any]], weeks: list[str], top: int = CHART_SERIES) -> dict[str, Any]:
    """The geometry of a line chart of weekly correction rates (changed / cases), one line per label.

    ``rows`` are ``{"week", "label", "n", "changed"}``; the ``top`` labels with the most cases get a
    line each, plus one for all cases. A week without cases leaves a gap. Pure: no I/O.
    """
    w, h, left, right, top_m, bottom = 640, 240, 44, 12, 12, 36
    totals: dict[str, int] = {}
    for r in rows:
        totals[str(r["label"])] = totals.get(str(r["label"]), 0) + r["n"]
    labels = sorted(totals, key=lambda k: (-totals[k], k))[:top]
    cells: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        for label in (str(r["label"]), "__all__"):
            cell = cells.setdefault((label, r["week"]), [0, 0])
            cell[0] += r["n"]
            cell[1] += r["changed"]
    span_x = (w - left - right) / max(len(weeks) - 1, 1)

    def x(i: int) -> float:
        return round(left + i * span_x, 1) if len(weeks) > 1 else left + (w - left - right) / 2

    def y(rate: float) -> float:
        return round(top_m + (1 - rate) * (h - top_m - bottom), 1)

    series = []
    for i, label in enumerate(["__all__", *labels]):
        points, path, pen_down = [], [], False
        for j, week in enumerate(weeks):
            n, changed = cells.get((label, week), (0, 0))
            if n == 0:
                pen_down = False
                continue
            rate = changed / n
            points.append({"x": x(j), "y": y(rate), "week": week, "n": n, "changed": changed, "rate": rate})
            path.append(f"{'L' if pen_down else 'M'}{x(j)},{y(rate)}")
            pen_down = True
        series.append({"label": "ทั้งหมด · all" if label == "__all__" else label, "total": totals.get(label),
                       "color": PALETTE[i % len(PALETTE)], "dash": DASHES[i % len(DASHES)],
                       "width": 3 if label == "__all__" else 2, "path": " ".join(path), "points": points})
    return {"width": w, "height": h, "left": left, "right": w - right, "bottom": h - bottom, "top": top_m,
            "grid": [{"y": y(v), "label": f"{int(v * 100)}%"} for v in (0, 0.25, 0.5, 0.75, 1.0)],
            "xticks": [{"x": x(j), "label": f"{wk[8:10]}/{wk[5:7]}"} for j, wk in enumerate(weeks)],
            "series": series, "weeks": weeks}


def week_starts(today: datetime, n: int) -> list[str]:
    """The Mondays of the last ``n`` weeks up to ``today``'s, oldest first, as ISO dates."""
    monday = (today - timedelta(days=today.weekday())).date()
    return [(monday - timedelta(weeks=k)).isoformat() for k in range(n - 1, -1, -1)]


@router.get("/overview")
def overview(request: Request, cases: CasesDep) -> Response:
    """Counts per agency and urgency, waiting cases and ages, correction rates over time, the model."""
    session = need_session(request)
    if isinstance(session, Response):
        return session
    store = cases.store
    loaded = cases.served
    now = datetime.now(UTC)
    bounds = [(now - delta).isoformat(timespec="microseconds") for _, _, delta in AGE_BUCKETS]
    counts = store.overview_counts(bounds)
    for row in counts["waiting"]:
        cumulative = row["newer"]
        row["buckets"] = [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, len(cumulative))]
        row["buckets"].append(row["n"] - cumulative[-1])
        row["oldest_age"] = age(row["oldest"], now) if row["oldest"] else None
    weeks = week_starts(now, CHART_WEEKS)
    charts = {by: rate_chart(store.correction_rates(weeks[0], by), weeks) for by in ("topic", "agency")}
    created = loaded.meta.get("created")
    metrics = metrics_summary(loaded.meta.get("metrics", {}))
    now_iso = now.isoformat(timespec="microseconds")
    deadlines = [{**c, "due": due(c["deadline"], now)} for c in store.deadlines(now_iso)]
    return render(request, "overview.html", session=session, page="overview", counts=counts, charts=charts,
                  deadlines=deadlines, escalations=store.escalations(), ratings=store.agency_ratings(now_iso),
                  hours=lambda h: "–" if h is None else f"{h:.1f}",
                  buckets=AGE_BUCKETS, model={"version": loaded.model.version, "created": created,
                                              "loaded_at": loaded.loaded_at, "metrics": metrics,
                                              "topics": len(loaded.model.topic_labels),
                                              "urgency_levels": loaded.model.urgency_levels},
                  corrections_since=store.corrections_since(created) if created else None,
                  metric_rows=flatten_metrics(metrics))


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"topic": {"micro_f1": 0.8}}`` -> ``[("topic.micro_f1", 0.8)]`` for a plain table."""
    out: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flatten_metrics(value, f"{name}."))
        elif isinstance(value, int | float | str) or value is None:
            out.append((name, value))
    return out
