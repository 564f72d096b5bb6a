"""Typed FastAPI dependencies: the settings, the case store, the served model, the case service, roles.

The app keeps what its start-up opened on ``app.state`` (``triage.app.create_app``); these are the
only functions that read it. Routes of the JSON API and the review pages take what they need as
parameters, e.g. ``cases: CasesDep`` or ``role: Annotated[str, Depends(need("read"))]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from triage.auth import authorize
from triage.cases import Cases
from triage.config import Settings
from triage.errors import StorageError
from triage.serving import ModelHolder, Served
from triage.store import ReviewStore


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


def need(permission: str) -> Callable[..., Awaitable[str]]:
    """A dependency giving the caller's role if its ``X-API-Key`` has ``permission`` (else 401 or 403)."""

    async def check(request: Request, key: Annotated[str | None, Depends(api_key)]) -> str:
        # async and no sync sub-dependency: FastAPI runs a sync dependency on a worker thread, a hop per request
        return authorize(request.app.state.settings.keys, key, permission)

    return check
