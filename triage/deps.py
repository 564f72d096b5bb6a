"""Typed FastAPI dependencies: the settings, the case store, the served model, the case service, roles.

The app keeps what its start-up opened on ``app.state`` (``triage.app.create_app``); these are the
only functions that read it. Routes of the JSON API and the review pages take what they need as
parameters, e.g. ``cases: CasesDep`` or ``role: Annotated[str, Depends(need("read"))]``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from triage.auth import authorize
from triage.cases import Cases
from triage.config import Settings
from triage.errors import StorageError, ThrottledError, UnauthorizedError
from triage.limits import FailureLimiter
from triage.security import log_safe
from triage.serving import ModelHolder, Served
from triage.store import ReviewStore

log = logging.getLogger("triage.auth")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.models
    return holder


def get_store(request: Request) -> ReviewStore:
    """The open case store (StorageError, a 503, outside the app's lifetime)."""
    store: ReviewStore | None = getattr(request.app.state, "store", None)
    if store is None:
        raise StorageError("the case store is not open")
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
StoreDep = Annotated[ReviewStore, Depends(get_store)]


def get_served(holder: HolderDep) -> Served:
    """The served model snapshot for this request (ModelError, a 503, before it is loaded)."""
    return holder.current


ServedDep = Annotated[Served, Depends(get_served)]


def get_cases(request: Request, store: StoreDep, served: ServedDep, settings: SettingsDep) -> Cases:
    return Cases(store, served, review_threshold=settings.review_threshold,
                 escalation_agency=settings.escalation_agency, max_text_chars=settings.max_text_chars,
                 notify=getattr(request.app.state, "wake_delivery", None))


CasesDep = Annotated[Cases, Depends(get_cases)]

api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


def client_of(request: Request) -> str:
    """The caller's address, the unit of throttling (behind a trusted proxy: what uvicorn's proxy headers say)."""
    return request.client.host if request.client else "unknown"


def failure_limiter(request: Request, kind: str) -> FailureLimiter:
    """The app's per-client failure counter: ``"keys"`` (wrong API keys) or ``"logins"`` (review logins)."""
    limits: dict[str, FailureLimiter] = request.app.state.failure_limits
    return limits[kind]


def check_key(request: Request, settings: Settings, key: str | None, permission: str) -> str:
    """The role of ``key`` if it has ``permission`` (``triage.auth.authorize``), throttled per client.

    A wrong key counts as a failure of the caller's address and is logged without the key; past
    ``TRIAGE_KEY_FAILURES`` in ``TRIAGE_FAILURE_WINDOW`` seconds every key from that address, the
    right one included, gets ThrottledError (429) until the oldest failure ages out. A missing key
    is no guess and does not count.
    """
    if not settings.keys or not key:
        return authorize(settings.keys, key, permission)
    limiter, client = failure_limiter(request, "keys"), client_of(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        raise ThrottledError(wait)
    try:
        return authorize(settings.keys, key, permission)
    except UnauthorizedError:
        wait = limiter.fail(client)
        log.warning("refused API key from client %s: unknown key (%s %s)", log_safe(client), request.method,
                    log_safe(request.url.path))
        if wait is not None:  # another worker counted this client's last allowed failures since the check
            raise ThrottledError(wait) from None
        raise


def need(permission: str) -> Callable[..., Awaitable[str]]:
    """A dependency giving the caller's role if its ``X-API-Key`` has ``permission`` (else 401, 403 or 429)."""

    async def check(request: Request, key: Annotated[str | None, Depends(api_key)]) -> str:
        # async and no sync sub-dependency: FastAPI runs a sync dependency on a worker thread, a hop per request
        return check_key(request, request.app.state.settings, key, permission)

    return check
