"""``POST /v1/triage`` without FastAPI's per-request machinery when nothing about the request is unusual.

An ASGI app that ``triage.app.TriageService`` runs ahead of everything FastAPI and the app's
middleware would do. The service's hot route costs about as much in FastAPI (its error and
telemetry middleware, routing, the dependency solver, the ``Request`` object, the app's middleware
layers) as in the model's Python for a short complaint. For a request that is plainly fine this
does what the route and its dependencies do, in the same order and with the same functions, and
answers the same bytes and headers:

- the head within ``TRIAGE_MAX_HEADER_BYTES`` (``HeaderLimit``'s count), a JSON content type, the
  body read whole within ``TRIAGE_MAX_BODY_BYTES``;
- the caller's ``X-API-Key`` allowed to triage (``triage.auth.authorize``; the client not throttled);
- the body parsed (orjson) and validated as ``ComplaintIn``, the text checked (``check_text``);
- then the micro-batcher, and its answer with ``Cache-Control: no-store`` as ``NoStore`` adds it.

Anything else (a wrong key, invalid JSON, a failed validation, a body over the limit, another
content type) goes to the full app with the body read so far handed on unchanged, so every error
answer, log line and failure count is exactly the route's. Only an error of the triage itself
(busy, a conflicting external_id, storage) is answered here, by the app's own handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.auth import authorize
from triage.cases import check_text
from triage.errors import TriageError
from triage.schemas import ComplaintIn

log = logging.getLogger("triage.hotpath")

PATH = "/v1/triage"
Handler = Callable[[Request, Exception], Awaitable[Response]]


def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _is_json(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.split(b";", 1)[0].strip().lower() == b"application/json"


class TriageFastPath:
    """See the module docstring. ``state`` is the FastAPI app's ``state`` (settings, batcher, limiters);
    the middleware puts itself there as ``fast_path`` (``answered`` counts its own answers)."""

    def __init__(self, app: ASGIApp, state: Any, on_triage_error: Handler, on_unexpected: Handler) -> None:
        self.app, self.state = app, state
        self.on_triage_error, self.on_unexpected = on_triage_error, on_unexpected
        self.answered = 0  # requests answered here (not by the full app)
        self._parsed: tuple[str, dict[str, str]] | None = None
        state.fast_path = self

    def wants(self, scope: Scope) -> bool:
        """Whether the request is one for this path (``POST /v1/triage``, no root path)."""
        return scope["path"] == PATH and scope["method"] == "POST" and not scope.get("root_path")

    def _keys(self) -> dict[str, str]:
        """The configured API keys, parsed once per setting (``Settings.keys`` parses them on every read)."""
        raw = self.state.settings.api_keys
        if self._parsed is None or self._parsed[0] is not raw:
            self._parsed = (raw, self.state.settings.keys)
        return self._parsed[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.wants(scope):
            await self.app(scope, receive, send)
            return
        consumed: list[Message] = []
        try:
            item = await self._read(scope, receive, consumed)
            if item is not None:
                data, created = await self.state.batcher.submit(item)
        except Exception as exc:  # what the route would raise (busy, conflict, storage, a bug): the app's handlers
            await self._error(scope, receive, send, exc)
            return
        if item is None:
            await self._full_app(scope, receive, send, consumed)
            return
        self.answered += 1
        await send({"type": "http.response.start", "status": 201 if created else 200,
                    "headers": [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": data})

    async def _read(self, scope: Scope, receive: Receive, consumed: list[Message]) -> ComplaintIn | None:
        """The complaint when the request is plainly fine, else None (the messages read are in ``consumed``)."""
        settings = self.state.settings
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        declared = _first(headers, b"content-length")
        if (sum(len(k) + len(v) + 4 for k, v in headers) > settings.max_header_bytes
                or not _is_json(_first(headers, b"content-type"))
                or (declared is not None and (not declared.isdigit() or int(declared) > settings.max_body_bytes))):
            return None
        body = b""
        while True:
            message = await receive()
            consumed.append(message)
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            if len(body) > settings.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break
        return self._plainly_fine(scope, headers, body)

    def _plainly_fine(self, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes) -> ComplaintIn | None:
        """The complaint, when the route would accept it; None when the full app must answer."""
        settings = self.state.settings
        raw_key = _first(headers, b"x-api-key")
        key = raw_key.decode("latin-1") if raw_key else None
        try:
            keys = self._keys()
            if keys and key:
                client = scope["client"][0] if scope.get("client") else "unknown"
                if self.state.failure_limits["keys"].retry_after(client) is not None:
                    return None
            authorize(keys, key, "triage")
            parsed = orjson.loads(body)
            if not isinstance(parsed, dict):
                return None
            item = ComplaintIn.model_validate(parsed)
            check_text(item.text, settings.max_text_chars)
        except Exception:  # whatever it is, the full app says it
            return None
        return item

    async def _full_app(self, scope: Scope, receive: Receive, send: Send, consumed: list[Message]) -> None:
        """The request to the full app, the messages already read handed on first."""
        pending = list(consumed)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        request = Request(scope, receive)
        if isinstance(exc, TriageError):
            response = await self.on_triage_error(request, exc)
        else:
            response = await self.on_unexpected(request, exc)
        if "cache-control" not in response.headers:
            response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)
