"""Who may do what: API keys to roles, and roles to permissions. Pure: no web framework, no I/O.

``PERMISSIONS`` is the one table of what each role may do (a role it does not name, such as
``agency:<name>``, may do nothing here); the JSON API (``triage.deps.need``)
and the review pages (``triage.review``) both ask ``authorize``. Roles: ``intake`` may triage;
``reviewer`` may read, correct and move cases (and so use the review pages); ``admin`` may do all
that and reload the model. With no keys configured (development mode) every caller is admin.

An agency key (``key:agency:<official agency name>`` in ``TRIAGE_API_KEYS``) has the role
``agency:<name>`` and the permissions ``AGENCY_PERMISSIONS``: it reads and moves cases, but only
its own agency's and only some steps (``triage.cases.check_agency_move``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from triage.errors import ForbiddenError, UnauthorizedError

PERMISSIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"triage", "model"}),
    "reviewer": frozenset({"read", "review", "correct", "status", "model"}),
    "admin": frozenset({"triage", "read", "review", "correct", "status", "model", "admin"}),
}
ROLES = tuple(PERMISSIONS)
"""intake may triage; reviewer may read cases, correct them and move them on; admin may do all and reload."""
DEV_ROLE = "admin"
"""The role of every caller when no keys are configured (development mode)."""
AGENCY_ROLE = "agency:"
"""An agency key's role is ``agency:<official agency name>``."""
AGENCY_PERMISSIONS = frozenset({"read", "status", "model"})
"""An agency may read and move (its own) cases; never triage, correct, reload or use the review pages."""


def agency_of(role: str | None) -> str | None:
    """The agency an ``agency:<name>`` role belongs to, else None."""
    return role[len(AGENCY_ROLE):] if role and role.startswith(AGENCY_ROLE) else None


def permissions(role: str | None) -> frozenset[str]:
    """What a role may do: the staff table's permissions, or an agency key's."""
    if role is None:
        return frozenset()
    if agency_of(role) is not None:
        return AGENCY_PERMISSIONS
    return PERMISSIONS.get(role, frozenset())


def key_hmac(secret: bytes, key: str) -> str:
    """The full HMAC-SHA256 of an API key under the server secret (hex): what a review session records."""
    return hmac.new(secret, b"triage-api-key\x00" + key.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def fingerprint(secret: bytes, key: str, labels: Mapping[str, str | None] | None = None) -> str:
    """How a key is named where people read it (audit trails, logs): its configured label
    (``key:role:label``), else ``k-`` and 12 hex digits of its HMAC under the server secret.

    Never a plain hash: 12 hex digits of an unsalted SHA-256 could be checked against guessed keys.
    """
    label = (labels or {}).get(key)
    return label if label else "k-" + key_hmac(secret, key)[:12]


def role_for_key(keys: Mapping[str, str], key: str | None) -> str | None:
    """The role of ``key`` (compared in constant time against every configured key), or None."""
    if not keys:
        return DEV_ROLE
    role = None
    if key:
        for known, known_role in keys.items():
            if hmac.compare_digest(known.encode(), key.encode("utf-8", "replace")):
                role = known_role
    return role


def key_for_hmac(keys: Mapping[str, str], secret: bytes, mac: str) -> str | None:
    """The configured key whose ``key_hmac`` is ``mac`` (what a review session recorded), or None."""
    found = None
    for known in keys:
        if hmac.compare_digest(key_hmac(secret, known), mac):
            found = known
    return found


def may(role: str | None, permission: str) -> bool:
    """Whether ``role`` has ``permission`` (an unknown or missing role has none)."""
    return permission in permissions(role)


def authorize(keys: Mapping[str, str], key: str | None, permission: str) -> str:
    """The role of ``key`` if it has ``permission``; else UnauthorizedError (unknown key) or ForbiddenError."""
    role = role_for_key(keys, key)
    if role is None:
        raise UnauthorizedError("missing or unknown API key: send it in the X-API-Key header")
    if not may(role, permission):
        raise ForbiddenError(f"role {role!r} may not do this (needs permission {permission!r})")
    return role
