"""The case store's part for following cases up (issue 10): tracking codes, deadlines, the webhook
outbox, complainants' feedback, and the numbers the review pages show about them.

``FollowupMixin`` is mixed into ``triage.store.SQLiteStore``; its ``_on_*`` hooks run inside the
store's own write transactions, so a status change, its new deadline and its outbox event are
committed together or not at all. Schema: migration 2 (``MIGRATION``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from triage.errors import ConflictError
from triage.outbox import event_body
from triage.sla import DEFAULT_SLA, deadline_for, parse_sla_hours
from triage.tracking import new_tracking_code

MIGRATION = """
    ALTER TABLE cases ADD COLUMN tracking_code TEXT;
    ALTER TABLE cases ADD COLUMN deadline TEXT;
    ALTER TABLE cases ADD COLUMN deadline_from TEXT;
    UPDATE cases SET tracking_code = upper(hex(randomblob(10))) WHERE tracking_code IS NULL;
    CREATE UNIQUE INDEX cases_tracking_code ON cases(tracking_code);
    CREATE INDEX cases_deadline ON cases(deadline) WHERE status NOT IN ('resolved', 'rejected');
    ALTER TABLE events ADD COLUMN public_note TEXT;
    ALTER TABLE events ADD COLUMN reason TEXT;
    ALTER TABLE events ADD COLUMN from_agency TEXT;
    CREATE TABLE outbox (
        event_id TEXT PRIMARY KEY,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        seq INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox(next_at) WHERE delivered_at IS NULL;
    CREATE INDEX outbox_case ON outbox(case_id, seq);
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        at TEXT NOT NULL,
        agency TEXT,
        stars INTEGER NOT NULL,
        comment TEXT,
        reopen INTEGER NOT NULL
    );
    CREATE INDEX feedback_case ON feedback(case_id, id);
    CREATE INDEX feedback_agency ON feedback(agency)
"""
OPEN = "status NOT IN ('resolved', 'rejected')"
ACCEPT_STATUSES = ("assigned", "in_progress")
ARRIVAL = "(a.kind = 'created' OR a.to_status IN ('forwarded', 'escalated') OR a.reason = 'reopened')"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class FollowupMixin:
    """Tracking, deadlines, outbox and feedback on top of the SQLite store (see the module docstring)."""

    # provided by SQLiteStore
    _lock: Any
    _db: sqlite3.Connection

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _get(self, db: sqlite3.Connection, case_id: int) -> dict[str, Any]:
        raise NotImplementedError

    def _case(self, row: sqlite3.Row) -> dict[str, Any]:
        raise NotImplementedError

    def get_case(self, case_id: int) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _event(db: sqlite3.Connection, case_id: int, kind: str, at: str, from_status: str | None = None,
               to_status: str | None = None, agency: str | None = None, actor: str | None = None,
               note: str | None = None, *, public_note: str | None = None, reason: str | None = None,
               from_agency: str | None = None) -> None:
        raise NotImplementedError

    # -- configuration ---------------------------------------------------------------------------

    HOURS_BETWEEN = "(julianday({end}) - julianday({start})) * 24"
    """SQL for the hours from ``start`` to ``end`` (ISO texts); the PostgreSQL store has its own."""

    sla_hours: Mapping[str, float] = parse_sla_hours(DEFAULT_SLA)
    webhooks: bool = False
    """Write an outbox event for every status change (only when a webhook URL is configured)."""

    def configure_followup(self, sla_hours: Mapping[str, float] | None = None, webhooks: bool = False) -> None:
        self.sla_hours = dict(sla_hours or parse_sla_hours(DEFAULT_SLA))
        self.webhooks = webhooks
        self._backfill_deadlines()

    def _backfill_deadlines(self) -> None:
        """Cases stored before deadlines existed get one from their creation and urgency."""
        rows = self._read(f"SELECT id, created_at, urgency FROM cases WHERE deadline IS NULL AND {OPEN} LIMIT 100000")
        if not rows:
            return
        with self._write() as db:
            for r in rows:
                db.execute("UPDATE cases SET deadline = ?, deadline_from = ? WHERE id = ? AND deadline IS NULL",
                           (deadline_for(r["created_at"], r["urgency"], self.sla_hours), r["created_at"], r["id"]))

    # -- hooks, inside the store's write transactions ---------------------------------------------

    def _insert_created(self, db: sqlite3.Connection, sql: str, values: tuple[Any, ...], urgency: str | None,
                        at: str) -> Any:
        """A new case's row, inserted by ``sql`` (its ``values`` then tracking code, deadline, deadline_from,
        ``RETURNING *``) with a fresh tracking code and the deadline of its urgency."""
        for _ in range(5):
            try:
                return db.execute(sql, (*values, new_tracking_code(), deadline_for(at, urgency, self.sla_hours),
                                        at)).fetchall()[0]
            except sqlite3.IntegrityError as exc:  # a repeated code: ~2^-99 a pair, but never a duplicate
                if "tracking_code" not in str(exc):
                    raise
        raise ConflictError("could not draw a unique tracking code")

    def _on_created(self, db: sqlite3.Connection, case_id: int, urgency: str | None, at: str) -> None:
        for _ in range(5):
            try:
                db.execute("UPDATE cases SET tracking_code = ?, deadline = ?, deadline_from = ? WHERE id = ?",
                           (new_tracking_code(), deadline_for(at, urgency, self.sla_hours), at, case_id))
                return
            except sqlite3.IntegrityError:  # a repeated code: ~2^-99 a pair, but never a duplicate
                continue
        raise ConflictError("could not draw a unique tracking code")

    def _on_corrected(self, db: sqlite3.Connection, case: dict[str, Any], urgency: str | None) -> None:
        """A corrected urgency moves the deadline: counted again from when the agency got the case."""
        if urgency is None or urgency == case["urgency"]:
            return
        start = case.get("deadline_from") or case["created_at"]
        db.execute("UPDATE cases SET deadline = ? WHERE id = ?",
                   (deadline_for(start, urgency, self.sla_hours), case["id"]))

    def _on_status(self, db: sqlite3.Connection, case: dict[str, Any], status: str, holder: str | None, at: str,
                   public_note: str | None, reset: bool = False) -> None:
        """After a status change: a new deadline when the case changed hands; the webhook event."""
        if reset or holder != case["agency"] or status in ("forwarded", "escalated"):
            db.execute("UPDATE cases SET deadline = ?, deadline_from = ? WHERE id = ?",
                       (deadline_for(at, case["urgency"], self.sla_hours), at, case["id"]))
        if self.webhooks:
            body = event_body(case["id"], case.get("tracking_code"), status, holder, at, public_note)
            seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM outbox WHERE case_id = ?", (case["id"],)).fetchone()[0]
            db.execute("INSERT INTO outbox (event_id, case_id, seq, created_at, body, next_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (json.loads(body)["event_id"], case["id"], seq, at, body, at))

    # -- tracking --------------------------------------------------------------------------------

    def find_tracking(self, code: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM cases WHERE tracking_code = ?", (code,))
        return self._case(rows[0]) if rows else None

    def events_for(self, case_id: int) -> list[dict[str, Any]]:
        """Every event of a case with all its columns (public notes, reasons), oldest first."""
        return [dict(r) for r in self._read("SELECT * FROM events WHERE case_id = ? ORDER BY id", (case_id,))]

    def add_feedback(self, case_id: int, stars: int, comment: str | None, reopen: bool) -> dict[str, Any]:
        """The complainant's rating of a resolved case; ``reopen`` gives it back to its agency.

        One rating per resolution: a second one before the case is resolved again is a conflict.
        """
        with self._write() as db:
            case = self._get(db, case_id)
            if case["status"] != "resolved":
                raise ConflictError(f"the case is {case['status']!r}; feedback is taken once it is resolved")
            resolved_at = db.execute("SELECT max(at) FROM events WHERE case_id = ? AND to_status = 'resolved'",
                                     (case_id,)).fetchone()[0]
            if db.execute("SELECT 1 FROM feedback WHERE case_id = ? AND at >= ?", (case_id, resolved_at)).fetchone():
                raise ConflictError("this resolution of the case was rated already")
            at = _now()
            db.execute("INSERT INTO feedback (case_id, at, agency, stars, comment, reopen) VALUES (?, ?, ?, ?, ?, ?)",
                       (case_id, at, case["agency"], stars, comment, int(reopen)))
            if reopen:  # back to the agency that resolved it, with a fresh deadline, in the same transaction
                db.execute("UPDATE cases SET status = 'assigned', updated_at = ? WHERE id = ?", (at, case_id))
                self._event(db, case_id, "status", at, "resolved", "assigned", case["agency"], "complainant",
                            f"reopened by the complainant ({stars} stars)", reason="reopened",
                            from_agency=case["agency"])
                self._on_status(db, case, "assigned", case["agency"], at, None, reset=True)
            return self._get(db, case_id)

    def feedback_for(self, case_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT at, agency, stars, comment, reopen FROM feedback "
                                            "WHERE case_id = ? ORDER BY id", (case_id,))]

    # -- deadlines -------------------------------------------------------------------------------

    def overdue_cases(self, now: str, limit: int = 500) -> list[dict[str, Any]]:
        """Open cases past their deadline, the most overdue first."""
        rows = self._read(f"SELECT * FROM cases WHERE {OPEN} AND deadline IS NOT NULL AND deadline < ? "
                          "ORDER BY deadline, id LIMIT ?", (now, limit))
        return [self._case(r) for r in rows]

    def deadlines(self, now: str, limit: int = 30) -> list[dict[str, Any]]:
        """Open cases by deadline, overdue first (soonest deadline first), with how often each was escalated."""
        rows = self._read(
            f"SELECT c.*, (SELECT count(*) FROM events e WHERE e.case_id = c.id AND e.to_status = 'escalated') "
            f"AS escalations FROM cases c WHERE {OPEN} AND deadline IS NOT NULL ORDER BY deadline, id LIMIT ?",
            (limit,))
        out = []
        for r in rows:
            case = self._case(r)
            case["overdue"] = case["deadline"] < now
            out.append(case)
        return out

    def escalations(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest escalations (by people and by the deadline check), newest first."""
        rows = self._read("SELECT case_id, at, from_agency, agency, actor, reason FROM events "
                          "WHERE to_status = 'escalated' ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def agency_ratings(self, now: str, limit: int = 50) -> list[dict[str, Any]]:
        """Per agency: mean hours to accept and to resolve (from when it got each case), the share of its
        cases past their deadline (open now, or resolved after it, or escalated away for being overdue),
        and the mean stars complainants gave it."""
        span = self.HOURS_BETWEEN.format(
            start=f"(SELECT max(a.at) FROM events a WHERE a.case_id = e.case_id AND a.agency = e.agency "
                  f"AND a.id < e.id AND {ARRIVAL})", end="e.at")
        accept = self._read(
            f"SELECT e.agency, avg({span}) AS hours, count(*) AS n FROM events e WHERE e.kind = 'status' "
            f"AND e.to_status IN {ACCEPT_STATUSES} AND coalesce(e.from_status, '') NOT IN {ACCEPT_STATUSES} "
            "AND e.actor != 'complainant' GROUP BY e.agency")
        resolve = self._read(f"SELECT e.agency, avg({span}) AS hours, count(*) AS n FROM events e "
                             "WHERE e.kind = 'status' AND e.to_status = 'resolved' GROUP BY e.agency")
        held = self._read(
            f"SELECT agency, count(*) AS n, sum(CASE WHEN {OPEN} THEN (CASE WHEN deadline < ? THEN 1 ELSE 0 END) ELSE "
            "(CASE WHEN (SELECT max(at) FROM events x WHERE x.case_id = cases.id AND x.to_status = 'resolved') "
            "> deadline THEN 1 ELSE 0 END) END) "
            "AS late FROM cases WHERE status != 'rejected' AND deadline IS NOT NULL GROUP BY agency", (now,))
        away = self._read("SELECT from_agency AS agency, count(*) AS n FROM events WHERE reason = 'overdue' "
                          "GROUP BY from_agency")
        stars = self._read("SELECT agency, avg(stars) AS mean, count(*) AS n FROM feedback GROUP BY agency")
        table: dict[str, dict[str, Any]] = {}

        def row(agency: str | None) -> dict[str, Any]:
            key = agency or "–"
            return table.setdefault(key, {"agency": key, "accept_hours": None, "accepted": 0, "resolve_hours": None,
                                          "resolved": 0, "cases": 0, "late": 0, "stars": None, "ratings": 0})

        for r in accept:
            row(r["agency"]).update(accept_hours=r["hours"], accepted=r["n"])
        for r in resolve:
            row(r["agency"]).update(resolve_hours=r["hours"], resolved=r["n"])
        for r in held:
            x = row(r["agency"])
            x["cases"] += int(r["n"])
            x["late"] += int(r["late"] or 0)
        for r in away:
            x = row(r["agency"])
            x["cases"] += int(r["n"])
            x["late"] += int(r["n"])
        for r in stars:
            row(r["agency"]).update(stars=r["mean"], ratings=r["n"])
        for x in table.values():
            x["overdue_share"] = x["late"] / x["cases"] if x["cases"] else None
        return sorted(table.values(), key=lambda x: (-(x["cases"] + x["ratings"]), x["agency"]))[:limit]

    # -- outbox ----------------------------------------------------------------------------------

    def due_events(self, now: str, limit: int = 50) -> list[dict[str, Any]]:
        """Undelivered events whose time has come, oldest first; a case's event waits for its earlier ones."""
        rows = self._read(
            "SELECT * FROM outbox o WHERE delivered_at IS NULL AND next_at <= ? AND NOT EXISTS ("
            "SELECT 1 FROM outbox p WHERE p.case_id = o.case_id AND p.delivered_at IS NULL AND p.seq < o.seq) "
            "ORDER BY created_at, seq LIMIT ?", (now, limit))
        return [dict(r) for r in rows]

    def claim_event(self, event_id: str, next_at: str, until: str) -> bool:
        """Take an event for one delivery attempt (pushes its next try to ``until``); False if another took it."""
        with self._write() as db:
            return db.execute("UPDATE outbox SET next_at = ? WHERE event_id = ? AND next_at = ? AND delivered_at IS NULL",
                              (until, event_id, next_at)).rowcount == 1

    def event_delivered(self, event_id: str, at: str) -> None:
        with self._write() as db:
            db.execute("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL "
                       "WHERE event_id = ?", (at, event_id))

    def event_failed(self, event_id: str, next_at: str, error: str) -> None:
        with self._write() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE event_id = ?",
                       (next_at, error[:300], event_id))

    def outbox_counts(self) -> dict[str, int]:
        row = self._read("SELECT count(*) AS total, count(delivered_at) AS delivered, "
                         "sum(CASE WHEN delivered_at IS NULL AND attempts > 0 THEN 1 ELSE 0 END) AS failing "
                         "FROM outbox")[0]
        return {"total": int(row["total"]), "delivered": int(row["delivered"] or 0), "failing": int(row["failing"] or 0)}

    def outbox_events(self) -> Iterator[dict[str, Any]]:
        for r in self._read("SELECT * FROM outbox ORDER BY created_at, seq"):
            yield dict(r)
