"""What a complainant may see of a case: tracking codes and the public view (the lookups' rate limit
is ``triage.limits.RateLimiter``, shared by the worker processes).

Every case gets a tracking code (20 characters from a 31-letter alphabet with no look-alikes,
about 99 bits from ``secrets``), returned by ``POST /v1/triage`` for the intake system to pass on.
The code is the only key to the public view, so the view holds only what a stranger may read:
status, current agency, last update, deadline and the steps with the notes staff marked public.
Never the complaint text, the contact, internal notes, staff names or anything of another case.
Pure: no web framework, no database (the routes are in ``triage.public``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""Upper-case letters and digits without 0/O, 1/I/L: read aloud over a hotline without mistakes."""
CODE_LENGTH = 20
CODE_RE = re.compile(rf"[{ALPHABET}0-9A-Za-z]{{16,64}}")
PUBLIC_STEP_KINDS = ("created", "status")
REASONS = {"overdue": "overdue", "reopened": "reopened"}
"""Why the system took a step, kept for the Thai page's wording; the JSON view has no such field."""


_EVEN = 256 - 256 % len(ALPHABET)
"""Random bytes below this map evenly onto the alphabet (``b % 31``); the others are drawn again."""


def new_tracking_code() -> str:
    """A fresh tracking code from the operating system's cryptographic random source.

    Each character uniform over ALPHABET, as ``secrets.choice`` gives it, from one ``token_bytes``
    call instead of twenty (rejection sampling: bytes of 248 and above are dropped)."""
    chars: list[str] = []
    while len(chars) < CODE_LENGTH:
        chars += [ALPHABET[b % len(ALPHABET)] for b in secrets.token_bytes(2 * CODE_LENGTH) if b < _EVEN]
    return "".join(chars[:CODE_LENGTH])


def looks_like_code(value: str) -> bool:
    """Cheap shape check before a lookup (16-64 letters or digits); anything else is simply unknown."""
    return bool(CODE_RE.fullmatch(value))


def public_steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as the complainant sees it: status steps only, with public notes only.

    Each step is ``{"at", "status", "agency", "note", "reason"}``; ``reason`` (overdue, reopened or None)
    words the Thai page and is left out of the JSON view."""
    steps = []
    for e in events:
        if e.get("kind") not in PUBLIC_STEP_KINDS or not e.get("to_status"):
            continue
        steps.append({"at": e["at"], "status": e["to_status"], "agency": e.get("agency"),
                      "note": e.get("public_note") or None, "reason": REASONS.get(e.get("reason") or "")})
    return steps


def public_view(case: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"status", "agency", "updated_at", "deadline", "steps"}`` of a case, nothing more.

    ``updated_at`` is the time of the last public step (an internal correction does not show).
    """
    steps = public_steps(events)
    return {"status": case["status"], "agency": case.get("agency"),
            "updated_at": steps[-1]["at"] if steps else case["created_at"], "deadline": case.get("deadline"),
            "steps": steps}

