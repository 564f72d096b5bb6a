"""What an agency key may do: its own cases only, and only the agency's steps of the workflow.

A ``TRIAGE_API_KEYS`` entry ``key:agency:<official agency name>`` gives the role
``agency:<name>``. Such a key lists and reads only the cases its agency holds now (another
agency's case is "not found", so a key cannot probe which cases exist), and moves them with
``POST /v1/cases/{id}/status``: accept (``assigned``), ``in_progress``, forward (``forwarded``, to
any agency of the directory), escalate (``escalated``) and resolve (``resolved``). It may not triage,
correct labels, reject, reload the model or use the review pages. Pure: no web framework, no I/O.
"""

from __future__ import annotations

from typing import Any

from triage.config import agency_of
from triage.errors import ForbiddenError, NotFoundError

AGENCY_PERMISSIONS = frozenset({"read", "status", "model"})
AGENCY_STATUSES = ("assigned", "in_progress", "forwarded", "escalated", "resolved")
"""accept, in progress, forward, escalate, resolve."""


def permissions(role: str, table: dict[str, frozenset[str]]) -> frozenset[str]:
    """The permissions of a role: the staff table's, or an agency key's."""
    if agency_of(role) is not None:
        return AGENCY_PERMISSIONS
    return table.get(role, frozenset())


def own_case(role: str | None, case: dict[str, Any]) -> dict[str, Any]:
    """The case, if this role may see it; an agency key gets NotFoundError for another agency's case."""
    agency = agency_of(role)
    if agency is not None and case.get("agency") != agency:
        raise NotFoundError(f"case {case['id']} does not exist")
    return case


def check_move(role: str | None, status: str) -> None:
    """Refuse (403) a workflow step an agency key may not take."""
    if agency_of(role) is not None and status not in AGENCY_STATUSES:
        raise ForbiddenError(f"an agency key may not set status {status!r}; it may set: {', '.join(AGENCY_STATUSES)}")
