"""Deadlines and automatic escalation of cases that sit too long.

Every case gets a ``deadline`` from its urgency (``TRIAGE_SLA_HOURS``, default
``high=24,medium=72,low=360``, fractions allowed: ``high=0.5`` is half an hour), counted from when
its current agency got it: the deadline is reset when the case is forwarded, escalated or reopened.
An open case past its deadline is escalated by the service itself, to its agency's parent in the
directory (the nearest one the case has not been at), else to the central level; the step is in the
history with actor ``system`` and reason ``overdue``. Each level escalates a case at most once: the
case never returns to an agency it has left (the forwarding-loop guard), and at the central level,
with nowhere higher to go, it stays overdue for people to see.

The pure part (parsing, deadlines, targets) takes values; ``escalate_overdue`` does one pass over
a store, and ``Every`` runs a pass in a background thread of the service, never in a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from triage.errors import ConflictError, NotFoundError, TriageError

log = logging.getLogger("triage.sla")

DEFAULT_SLA = "high=24,medium=72,low=360"
SYSTEM = "system"
OVERDUE = "overdue"


def parse_sla_hours(value: str) -> dict[str, float]:
    """``"high=24,medium=72,low=0.5"`` -> ``{"high": 24.0, "medium": 72.0, "low": 0.5}``; ValueError names a bad entry."""
    hours: dict[str, float] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        level, sep, number = part.partition("=")
        level = level.strip()
        try:
            h = float(number)
        except ValueError:
            h = float("nan")
        if not sep or not level or not (0 < h <= 24 * 3650):
            raise ValueError(f"SLA entry {part!r} is not 'urgency=hours' with hours a number above 0 "
                             "(e.g. high=24,medium=72,low=360)")
        hours[level] = h
    if not hours:
        raise ValueError("SLA hours are empty; e.g. high=24,medium=72,low=360")
    return hours


def hours_for(urgency: str | None, hours: Mapping[str, float]) -> float:
    """The hours a case of this urgency has; an urgency the setting does not name gets the longest."""
    if urgency is not None and urgency in hours:
        return hours[urgency]
    return max(hours.values())


def deadline_for(start: str, urgency: str | None, hours: Mapping[str, float]) -> str:
    """The deadline (ISO, UTC, microseconds, like every time the store keeps) of a case started at ``start``."""
    at = datetime.fromisoformat(start) + timedelta(hours=hours_for(urgency, hours))
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def is_overdue(deadline: str | None, status: str, now: datetime) -> bool:
    return bool(deadline) and status not in ("resolved", "rejected") and datetime.fromisoformat(str(deadline)) < now


class ParentDirectory(Protocol):
    @property
    def agencies(self) -> Mapping[str, Any]: ...
    def escalation(self, name: str) -> list[str]: ...


def escalation_target(directory: ParentDirectory | None, agency: str | None, path: Sequence[str],
                      central: str) -> str | None:
    """Where an overdue case at ``agency`` goes: the nearest parent it has not been at, else the central
    level; None when it is at the central level already or has been everywhere above."""
    chain = directory.escalation(agency) if directory is not None and agency and agency in directory.agencies else []
    for target in [*chain, central]:
        if target != agency and target not in path:
            return target
    return None


class EscalationStore(Protocol):
    def overdue_cases(self, now: str, limit: int = 500) -> list[dict[str, Any]]: ...
    def change_status_at_version(self, case_id: int, version: str, status: str, agency: str | None, actor: str,
                                 note: str | None, *, public_note: str | None = None,
                                 reason: str | None = None) -> dict[str, Any]: ...


def escalate_overdue(store: EscalationStore, directory: ParentDirectory | None, central: str,
                     now: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """One pass: escalate every open case past its deadline one level up. Returns what moved.

    Safe to run in several processes at once: each move is conditional on the case being unchanged
    since it was read (its version), so a case is escalated once even when two passes see it.
    """
    now = now or datetime.now(UTC)
    moved: list[dict[str, Any]] = []
    for case in store.overdue_cases(now.isoformat(timespec="microseconds"), limit):
        target = escalation_target(directory, case["agency"], case["agency_path"], central)
        if target is None:
            continue
        note = f"overdue: deadline {case['deadline']} passed at {case['agency'] or '-'}; escalated to {target}"
        try:
            store.change_status_at_version(case["id"], case["updated_at"], "escalated", target, SYSTEM, note,
                                           reason=OVERDUE)
        except (ConflictError, NotFoundError):
            continue  # changed meanwhile (another pass, a person): the next pass looks again
        log.info("case %d overdue at %s: escalated to %s", case["id"], case["agency"], target)
        moved.append({"case_id": case["id"], "from": case["agency"], "to": target})
    return moved


class Every:
    """Run ``job`` every ``seconds`` in a daemon thread until ``stop``; a failing run is logged, not fatal."""

    def __init__(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        self.name, self.seconds, self.job = name, seconds, job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Every:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.job()
            except TriageError as exc:
                log.error("%s failed: %s", self.name, exc)
            except Exception:
                log.exception("%s failed", self.name)
            self._stop.wait(self.seconds)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
