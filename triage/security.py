"""Small security pieces of the service (issue 13): names safe to log, key identities, throttling,
header limits and response caching. Pure where it can be; the ASGI middleware is at the end.

- ``has_control`` / ``log_safe``: people's names (reviewer, actor, login name) with control
  characters are refused at the boundary; anything user-given that is logged goes through
  ``log_safe``, so a value can never start a forged log line or hide text from a terminal.
- Throttling of failed keys and logins is ``triage.limits.FailureLimiter`` (shared by the worker processes).
- ``scrub_prediction``: urgency cues, routing phrases and explanation words come from the unmasked
  text; what is shown of them has names masked like the text itself.
- ``HeaderLimit`` and ``NoStore``: ASGI middleware for request header size (431) and
  ``Cache-Control: no-store`` on every answer that did not set its own.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any

from triage.text import has_titled_name, mask_names_in, name_tokens

if TYPE_CHECKING:  # the middleware below is ASGI; nothing of a web framework is imported at run time
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bidirectional overrides and isolates reorder what a terminal shows ("Trojan source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI


def has_control(value: str) -> bool:
    """True when ``value`` has a control character (newline, tab, escape, ...), a line or paragraph
    separator, or a bidirectional override: none belongs in a person's name."""
    return any(_is_control(ch) for ch in value)


def check_name(value: str) -> str:
    """A person's name as given, or ValueError naming the first control character in it."""
    for i, ch in enumerate(value):
        if _is_control(ch):
            raise ValueError(f"contains a control character (U+{ord(ch):04X}) at position {i}; "
                             "names must be one line of printable text")
    return value


def log_safe(value: object) -> str:
    """``value`` as text for a log line with control, separator and bidi characters escaped.

    ``"bob\\nINFO forged"`` -> ``"bob\\\\nINFO forged"``; Thai and other printable text is unchanged.
    """
    text = str(value)
    if not has_control(text):
        return text
    out = []
    for ch in text:
        if not _is_control(ch):
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


# -- middleware -----------------------------------------------------------------------------------

class HeaderLimit:
    """ASGI middleware: refuse a request whose header lines add up to more than ``limit`` bytes (431).

    The HTTP server's own limit (``h11_max_incomplete_event_size`` in serve.py) stops a huge head
    before it is read whole; this one also holds for servers and parsers without such a limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or [])
            if size > self.limit:
                body = (f'{{"error": "request headers are {size} bytes; at most {self.limit} are allowed '
                        f'(TRIAGE_MAX_HEADER_BYTES)", "detail": null}}').encode()
                await send({"type": "http.response.start", "status": 431,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"cache-control", b"no-store"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class NoStore:
    """ASGI middleware: ``Cache-Control: no-store`` on every response that does not set its own.

    API answers carry complaint text, reporter contacts and names; no browser or proxy cache may
    keep them. The review pages set the same (and the static files their own ``no-cache``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_no_store)


# -- names in what is shown -----------------------------------------------------------------------

_WHY_PHRASE = re.compile(r"phrase '(.*?)'")


def scrub_prediction(pred: dict[str, Any], text: str) -> dict[str, Any]:
    """A prediction without the names of its complaint: cue phrases and routing phrases with the name
    parts replaced by ``[name]``, explanation words that occur only inside a titled name dropped.

    Predictions are made on the unmasked text (the model was trained so), but what they show to
    reviewers and API clients must not carry names (``นายสมชาย ใจดี``) that ``mask_personal`` hides
    from the text itself. A complaint without a titled name is returned unchanged.
    """
    if not text or not has_titled_name(text):
        return pred
    hidden = name_tokens(text)
    out = dict(pred)
    out["explanation"] = [e for e in pred.get("explanation") or []
                          if not set(str(e.get("token", "")).split()) & hidden]
    out["urgency_cues"] = [mask_names_in(str(c), text) for c in pred.get("urgency_cues") or []]
    agency = pred.get("agency_explanation")
    if isinstance(agency, dict) and isinstance(agency.get("table"), list):
        table = [{**row, "why": _WHY_PHRASE.sub(lambda m: f"phrase '{mask_names_in(m.group(1), text)}'",
                                                 str(row.get("why", "")))} if isinstance(row, dict) else row
                 for row in agency["table"]]
        out["agency_explanation"] = {**agency, "table": table}
    return out
