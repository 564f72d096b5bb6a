"""The case store: cases, their history and reviewers' corrections, in SQLite by default.

The API talks only to the ``Store`` protocol below; ``triage.database.open_store`` opens this SQLite
store or, for a ``postgresql://`` URL, the PostgreSQL one (``triage.store_pg``, which runs this
module's SQL). The SQLite store keeps one file under the data
dir in WAL mode (readers never block the writer; a killed process loses nothing it committed),
applies numbered migrations at open (with Alembic, ``triage.migrate``), and serialises its use of one connection with a lock, so
it is safe to share between the server's threads. Every write is one transaction: a case is
stored together with its first history event or not at all.

Case status workflow (``TRANSITIONS``)::

    new -> assigned -> in_progress -> forwarded / escalated -> resolved / rejected

Forwarding a case to an agency it has already been at is refused (a forwarding loop).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from triage.errors import ConfigError, ConflictError, NotFoundError, StaleError, StorageError
from triage.store_followup import MIGRATION as FOLLOWUP_MIGRATION
from triage.store_followup import FollowupMixin
from triage.store_sessions import SESSIONS_MIGRATION, SessionsMixin, private_file

STATUSES = ("new", "assigned", "in_progress", "forwarded", "escalated", "resolved", "rejected")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("assigned", "in_progress", "forwarded", "escalated", "rejected"),
    "assigned": ("in_progress", "forwarded", "escalated", "resolved", "rejected"),
    "in_progress": ("forwarded", "escalated", "resolved", "rejected"),
    "forwarded": ("assigned", "in_progress", "forwarded", "escalated", "resolved", "rejected"),
    "escalated": ("assigned", "in_progress", "forwarded", "escalated", "resolved", "rejected"),
    "resolved": (),
    "rejected": (),
}
ACCEPTED = ("assigned", "in_progress")
"""Statuses that mean an agency took the case: an urgent case then no longer waits for a person."""

MIGRATIONS: list[str] = [
    # 1: cases, their history, corrections
    """
    CREATE TABLE cases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        external_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        text TEXT NOT NULL,
        masked_text TEXT NOT NULL,
        district TEXT,
        source TEXT,
        reporter_contact TEXT,
        model_version TEXT NOT NULL,
        prediction TEXT NOT NULL,
        topics TEXT NOT NULL,
        urgency TEXT,
        urgency_rank INTEGER NOT NULL,
        agencies TEXT NOT NULL,
        agency TEXT,
        agency_path TEXT NOT NULL,
        status TEXT NOT NULL,
        needs_review INTEGER NOT NULL,
        review_reasons TEXT NOT NULL,
        corrected INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX cases_external_id ON cases(external_id) WHERE external_id IS NOT NULL;
    CREATE INDEX cases_status ON cases(status, id);
    CREATE INDEX cases_agency ON cases(agency, id);
    CREATE INDEX cases_queue ON cases(needs_review, urgency_rank, created_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT,
        agency TEXT,
        actor TEXT,
        note TEXT
    );
    CREATE INDEX events_case ON events(case_id, id);
    CREATE TABLE corrections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        reason TEXT NOT NULL,
        topics TEXT,
        urgency TEXT,
        agencies TEXT,
        before TEXT NOT NULL,
        predicted_topic TEXT,
        predicted_agency TEXT
    );
    CREATE INDEX corrections_case ON corrections(case_id, id);
    CREATE INDEX corrections_agency ON corrections(predicted_topic, predicted_agency) WHERE agencies IS NOT NULL;
    """,
    # 2: tracking codes, deadlines, public notes, the webhook outbox, feedback (triage.store_followup)
    FOLLOWUP_MIGRATION,
    # 3: review-page sessions, so that a logout ends one on the server (triage.store_sessions)
    SESSIONS_MIGRATION,
]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Store(Protocol):
    """What the API needs from a case store. Cases are plain dicts (see ``SQLiteStore._case``)."""

    def create_cases(self, records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]: ...
    def create_cases_each(self, records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool] | Exception]: ...
    def get_case(self, case_id: int) -> dict[str, Any]: ...
    def find_external(self, external_id: str) -> dict[str, Any] | None: ...
    def list_cases(self, *, status: str | None = None, agency: str | None = None, urgency: str | None = None,
                   needs_review: bool | None = None, limit: int = 50,
                   cursor: int | None = None) -> tuple[list[dict[str, Any]], int | None]: ...
    def review_queue(self, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]: ...
    def add_correction(self, case_id: int, reviewer: str, reason: str, topics: list[str] | None,
                       urgency: str | None, urgency_rank: int | None,
                       agencies: list[str] | None) -> dict[str, Any]: ...
    def change_status(self, case_id: int, status: str, agency: str | None, actor: str,
                      note: str | None, *, public_note: str | None = None,
                      reason: str | None = None) -> dict[str, Any]: ...
    def find_tracking(self, code: str) -> dict[str, Any] | None: ...
    def events_for(self, case_id: int) -> list[dict[str, Any]]: ...
    def add_feedback(self, case_id: int, stars: int, comment: str | None, reopen: bool) -> dict[str, Any]: ...
    def history(self, case_id: int) -> list[dict[str, Any]]: ...
    def agency_corrected_before(self, topic: str, agency: str) -> bool: ...
    def corrected_cases(self) -> Iterator[dict[str, Any]]: ...
    def corrections(self, case_id: int) -> list[dict[str, Any]]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def _json(value: Any) -> str:
    """Compact UTF-8 JSON (orjson: the case write's largest cost after the insert itself)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")


def _loads(text: str) -> Any:
    """JSON written by ``_json`` (orjson, several times faster to read back); the standard library for
    what orjson refuses (NaN, written by older versions with ``json.dumps``)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


CASE_COLUMNS = ("external_id, created_at, updated_at, text, masked_text, district, source, reporter_contact, "
                "model_version, prediction, topics, urgency, urgency_rank, agencies, agency, agency_path, status, "
                "needs_review, review_reasons")
"""The columns a new case is inserted with (``case_values``), on both backends."""


def case_values(rec: dict[str, Any], at: str) -> tuple[str | None, tuple[Any, ...]]:
    """A new case's first agency, and its values for ``CASE_COLUMNS`` (status ``new``)."""
    agency = rec["agencies"][0] if rec["agencies"] else None
    return agency, (rec.get("external_id"), at, at, rec["text"], rec["masked_text"], rec.get("district"),
                    rec.get("source"), rec.get("reporter_contact"), rec["model_version"], _json(rec["prediction"]),
                    _json(rec["topics"]), rec.get("urgency"), rec["urgency_rank"], _json(rec["agencies"]), agency,
                    _json([agency] if agency else []), "new", int(rec["needs_review"]),
                    _json(rec["review_reasons"]))


_INSERT_CASE = f"INSERT INTO cases ({CASE_COLUMNS}) VALUES ({', '.join(['?'] * (CASE_COLUMNS.count(',') + 1))})"
_INSERT_NEW_CASE = (f"INSERT INTO cases ({CASE_COLUMNS}, tracking_code, deadline, deadline_from) "
                    f"VALUES ({', '.join(['?'] * (CASE_COLUMNS.count(',') + 4))}) RETURNING *")
"""A new case with its tracking code and deadline, read back by the insert itself (SQLite >= 3.35):
one statement where an insert, an update and a select were (``FollowupMixin._insert_created``)."""
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


def _into_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Switch a connection's file to WAL. The switch needs the file to itself, and SQLite may answer
    "database is locked" at once, without its busy handler, while another process or thread opens or
    migrates the same new file; so it is retried here until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SQLiteStore(FollowupMixin, SessionsMixin):
    """The SQLite case store (see the module docstring)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        try:
            private_file(path)
            self._db = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            _into_wal(self._db, timeout)
            self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL: a process kill loses no commit
            self._db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the case database {path}: {exc}") from exc
        self._lock = threading.RLock()
        self.migrate()

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, no upgrade deadlock)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"the case database is busy or unwritable: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"the case database could not write: {exc}") from exc
                raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"the case database could not be read: {exc}") from exc

    def migrate(self) -> None:
        """Apply the numbered migrations this database has not seen yet, with Alembic (``triage.migrate``).

        A database at the newest version (``PRAGMA user_version``, kept in step with Alembic's table)
        opens without loading Alembic at all.
        """
        version = self._read("PRAGMA user_version")[0][0]
        if version > len(MIGRATIONS):
            raise ConfigError(f"database {self.path} is at schema version {version}; this code knows "
                              f"up to {len(MIGRATIONS)}: upgrade the code")
        if version == len(MIGRATIONS) and self._read("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"):
            return
        from triage.migrate import upgrade_sqlite

        upgrade_sqlite(self.path)

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _case(row: sqlite3.Row) -> dict[str, Any]:
        case = dict(row)
        for key in ("prediction", "topics", "agencies", "agency_path", "review_reasons"):
            case[key] = _loads(case[key])
        case["needs_review"] = bool(case["needs_review"])
        case["corrected"] = bool(case["corrected"])
        return case

    def _get(self, db: sqlite3.Connection, case_id: int) -> dict[str, Any]:
        row = db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"case {case_id} does not exist")
        return self._case(row)

    @staticmethod
    def _event(db: sqlite3.Connection, case_id: int, kind: str, at: str, from_status: str | None = None,
               to_status: str | None = None, agency: str | None = None, actor: str | None = None,
               note: str | None = None, *, public_note: str | None = None, reason: str | None = None,
               from_agency: str | None = None) -> None:
        db.execute("INSERT INTO events (case_id, at, kind, from_status, to_status, agency, actor, note, public_note, "
                   "reason, from_agency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (case_id, at, kind, from_status, to_status, agency, actor, note, public_note, reason, from_agency))

    # -- cases --------------------------------------------------------------------------------

    def create_cases(self, records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
        """Store new cases in one transaction; a known ``external_id`` returns the stored case instead.

        Each record has: text, masked_text, district, source, reporter_contact, external_id,
        model_version, prediction (dict), topics, urgency, urgency_rank, agencies, needs_review,
        review_reasons. Returns (case, created) pairs in order. The same external_id with a
        different text is a ConflictError: it is not a retry.
        """
        out: list[tuple[dict[str, Any], bool]] = []
        with self._write() as db:
            for rec in records:
                out.append(self._create(db, rec))
        return out

    def create_cases_each(self, records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool] | Exception]:
        """Group commit: store independent requests' cases in one transaction, each on its own.

        One record's ConflictError (or database error) rolls back only that record (a savepoint)
        and is returned in its place; the others commit together. When this returns, every
        (case, created) it returns is committed, so a caller may acknowledge it.
        """
        out: list[tuple[dict[str, Any], bool] | Exception] = []
        with self._write() as db:
            for rec in records:
                db.execute("SAVEPOINT one_case")
                try:
                    out.append(self._create(db, rec))
                except (ConflictError, sqlite3.Error) as exc:
                    db.execute("ROLLBACK TO one_case")
                    out.append(exc if isinstance(exc, ConflictError) else
                               StorageError(f"the case database could not write: {exc}"))
                db.execute("RELEASE one_case")
        return out

    def _create(self, db: sqlite3.Connection, rec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Insert one case and its first event, or return the stored case of a known external_id."""
        ext = rec.get("external_id")
        if ext is not None:
            row = db.execute("SELECT * FROM cases WHERE external_id = ?", (ext,)).fetchone()
            if row is not None:
                return self._known(row, rec)
        at = now()
        agency, values = case_values(rec, at)
        if _RETURNING:
            row = self._insert_created(db, _INSERT_NEW_CASE, values, rec.get("urgency"), at)
            case_id = int(row["id"])
        else:  # an SQLite without RETURNING: insert, set the tracking code and deadline, read back
            case_id = int(db.execute(_INSERT_CASE, values).lastrowid or 0)
            self._on_created(db, case_id, rec.get("urgency"), at)
        self._event(db, case_id, "created", at, None, "new", agency, rec.get("source"),
                    f"triaged by model {rec['model_version']}")
        return (self._written(row, rec, agency) if _RETURNING else self._get(db, case_id)), True

    @staticmethod
    def _written(row: sqlite3.Row, rec: dict[str, Any], agency: str | None) -> dict[str, Any]:
        """A just-inserted case from its ``RETURNING *`` row, as ``_case`` reads it, without parsing back
        the JSON columns written a moment ago: their values are the record's own (the JSON text of
        each is orjson's of that value, which reads back equal)."""
        case = dict(row)
        case["prediction"], case["topics"], case["agencies"] = rec["prediction"], rec["topics"], rec["agencies"]
        case["agency_path"] = [agency] if agency else []
        case["review_reasons"] = rec["review_reasons"]
        case["needs_review"] = bool(case["needs_review"])
        case["corrected"] = bool(case["corrected"])
        return case

    def _known(self, row: Any, rec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The stored case of a retried external_id (not created now); a different text is a conflict."""
        if row["text"] != rec["text"]:
            raise ConflictError(f"external_id {rec.get('external_id')!r} is already case {row['id']} with a "
                                "different text; a retry must send the same complaint")
        return self._case(row), False

    def get_case(self, case_id: int) -> dict[str, Any]:
        with self._lock:
            return self._get(self._db, case_id)

    def find_external(self, external_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM cases WHERE external_id = ?", (external_id,))
        return self._case(rows[0]) if rows else None

    def list_cases(self, *, status: str | None = None, agency: str | None = None, urgency: str | None = None,
                   needs_review: bool | None = None, limit: int = 50,
                   cursor: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Cases newest first; ``cursor`` is the id of the last case of the previous page."""
        where: list[str] = []
        params: list[str | int] = []
        for column, value in (("status", status), ("agency", agency), ("urgency", urgency)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if needs_review is not None:
            where.append("needs_review = ?")
            params.append(int(needs_review))
        if cursor is not None:
            where.append("id < ?")
            params.append(cursor)
        sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        rows = self._read(sql, (*params, limit + 1))
        cases = [self._case(r) for r in rows[:limit]]
        return cases, (cases[-1]["id"] if len(rows) > limit else None)

    def review_queue(self, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Open cases that need a person: overdue first, then most urgent, then oldest. Returns (page, total)."""
        open_ = "needs_review = 1 AND status NOT IN ('resolved', 'rejected')"
        rows = self._read(f"SELECT * FROM cases WHERE {open_} ORDER BY {QUEUE_ORDER} LIMIT ? OFFSET ?",
                          (now(), limit, offset))
        total = self._read(f"SELECT count(*) FROM cases WHERE {open_}")[0][0]
        return [self._case(r) for r in rows], int(total)

    def add_correction(self, case_id: int, reviewer: str, reason: str, topics: list[str] | None,
                       urgency: str | None, urgency_rank: int | None,
                       agencies: list[str] | None) -> dict[str, Any]:
        """Append a reviewer's correction to the audit trail and make it the case's current labels.

        The case leaves the review queue. Earlier corrections are kept, never overwritten.
        """
        with self._write() as db:
            case = self._get(db, case_id)
            at = now()
            before = {"topics": case["topics"], "urgency": case["urgency"], "agencies": case["agencies"]}
            pred = case["prediction"]
            db.execute(
                "INSERT INTO corrections (case_id, at, reviewer, reason, topics, urgency, agencies, before, "
                "predicted_topic, predicted_agency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, at, reviewer, reason, None if topics is None else _json(topics), urgency,
                 None if agencies is None else _json(agencies), _json(before),
                 (pred.get("topics") or [None])[0], (pred.get("agencies") or [None])[0]),
            )
            new_topics = case["topics"] if topics is None else topics
            new_urgency, rank = (case["urgency"], case["urgency_rank"]) if urgency is None else (urgency, urgency_rank)
            new_agencies = case["agencies"] if agencies is None else agencies
            agency, path = case["agency"], case["agency_path"]
            if agencies is not None and case["status"] == "new":
                agency = agencies[0]
                path = [agency]
            db.execute(
                "UPDATE cases SET topics = ?, urgency = ?, urgency_rank = ?, agencies = ?, agency = ?, agency_path = ?, "
                "needs_review = 0, review_reasons = '[]', corrected = 1, updated_at = ? WHERE id = ?",
                (_json(new_topics), new_urgency, rank, _json(new_agencies), agency, _json(path), at, case_id),
            )
            self._on_corrected(db, case, urgency)
            changed = [k for k, v in (("topics", topics), ("urgency", urgency), ("agencies", agencies)) if v is not None]
            self._event(db, case_id, "correction", at, case["status"], case["status"], agency, reviewer,
                        f"corrected {', '.join(changed)}: {reason}")
            return self._get(db, case_id)

    def change_status(self, case_id: int, status: str, agency: str | None, actor: str,
                      note: str | None, *, public_note: str | None = None,
                      reason: str | None = None) -> dict[str, Any]:
        """Move a case through its workflow, refusing impossible transitions and forwarding loops.

        ``note`` is internal; ``public_note`` shows on the complainant's tracking page.
        """
        with self._write() as db:
            case = self._get(db, case_id)
            current = case["status"]
            if status not in TRANSITIONS.get(current, ()):
                allowed = ", ".join(TRANSITIONS.get(current, ())) or "none (the case is closed)"
                raise ConflictError(f"case {case_id} cannot go from {current!r} to {status!r}; allowed: {allowed}")
            path = list(case["agency_path"])
            holder = case["agency"]
            if status in ("forwarded", "escalated"):
                if not agency:
                    raise ConflictError(f"status {status!r} needs the agency the case goes to")
                if agency in path:
                    raise ConflictError(f"case {case_id} was already at {agency!r} (path: {' -> '.join(path)}); "
                                        "forwarding it there again would make a loop")
                path.append(agency)
                holder = agency
            elif agency and agency != holder:
                if agency not in path:
                    path.append(agency)
                holder = agency
            reasons = list(case["review_reasons"])
            if status in ACCEPTED and "urgent_not_accepted" in reasons:
                reasons.remove("urgent_not_accepted")
            at = now()
            db.execute("UPDATE cases SET status = ?, agency = ?, agency_path = ?, review_reasons = ?, needs_review = ?, "
                       "updated_at = ? WHERE id = ?",
                       (status, holder, _json(path), _json(reasons), int(bool(reasons)), at, case_id))
            self._event(db, case_id, "status", at, current, status, holder, actor, note, public_note=public_note,
                        reason=reason, from_agency=case["agency"])
            self._on_status(db, case, status, holder, at, public_note)
            return self._get(db, case_id)

    def history(self, case_id: int) -> list[dict[str, Any]]:
        with self._lock:
            self._get(self._db, case_id)
            rows = self._db.execute("SELECT at, kind, from_status, to_status, agency, actor, note, public_note, reason "
                                    "FROM events "
                                    "WHERE case_id = ? ORDER BY id", (case_id,)).fetchall()
        return [dict(r) for r in rows]

    def corrections(self, case_id: int) -> list[dict[str, Any]]:
        """A case's corrections, oldest first (the audit trail)."""
        rows = self._read("SELECT * FROM corrections WHERE case_id = ? ORDER BY id", (case_id,))
        out = []
        for r in rows:
            c = dict(r)
            for key in ("topics", "agencies", "before"):
                c[key] = None if c[key] is None else json.loads(c[key])
            out.append(c)
        return out

    def agency_corrected_before(self, topic: str, agency: str) -> bool:
        """Did a reviewer correct the agency of an earlier case with the same predicted topic and agency?"""
        return bool(self._read("SELECT 1 FROM corrections WHERE agencies IS NOT NULL AND predicted_topic = ? "
                               "AND predicted_agency = ? LIMIT 1", (topic, agency)))

    def corrected_cases(self) -> Iterator[dict[str, Any]]:
        """Every corrected case with its current (corrected) labels, oldest first."""
        last = 0
        while True:
            rows = self._read("SELECT * FROM cases WHERE corrected = 1 AND id > ? ORDER BY id LIMIT 500", (last,))
            if not rows:
                return
            for r in rows:
                yield self._case(r)
            last = rows[-1]["id"]

    def integrity(self) -> str:
        """SQLite's own integrity check: ``"ok"`` when the file is sound."""
        return str(self._read("PRAGMA integrity_check")[0][0])

    # -- for the review pages (triage.review): reads, and writes that refuse a stale form ----------

    def review_queue_filtered(self, limit: int = 50, offset: int = 0, *, agency: str | None = None,
                              urgency: str | None = None, district: str | None = None,
                              status: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """The review queue (same order as ``review_queue``) narrowed by agency, urgency, district, status."""
        where, params = [IN_QUEUE], []
        for column, value in (("agency", agency), ("urgency", urgency), ("district", district), ("status", status)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        cond = " AND ".join(where)
        rows = self._read(f"SELECT * FROM cases WHERE {cond} ORDER BY {QUEUE_ORDER} LIMIT ? OFFSET ?",
                          (*params, now(), limit, offset))
        total = self._read(f"SELECT count(*) FROM cases WHERE {cond}", tuple(params))[0][0]
        return [self._case(r) for r in rows], int(total)

    def queue_facets(self) -> dict[str, list[str]]:
        """The values the queue's filters can take: the agencies, urgencies, districts, statuses in the queue."""
        out: dict[str, list[str]] = {}
        for column in ("agency", "urgency", "district", "status"):
            rows = self._read(f"SELECT DISTINCT {column} FROM cases WHERE {IN_QUEUE} AND {column} IS NOT NULL "
                              f"ORDER BY {column} LIMIT 500")
            out[column] = [str(r[0]) for r in rows]
        return out

    def overview_counts(self, newer_than: list[str]) -> dict[str, Any]:
        """Open cases per agency, urgency and status; the queue per urgency with its oldest case.

        ``newer_than`` are created_at bounds (ISO, UTC); each queue row gets ``newer[i]``, how many
        of its cases were created at or after ``newer_than[i]``, so the page can show age buckets.
        """
        per_agency = self._read(f"SELECT agency, count(*) AS n FROM cases WHERE {OPEN_CASE} "
                                "GROUP BY agency ORDER BY n DESC, agency LIMIT 30")
        per_urgency = self._read(f"SELECT urgency, count(*) AS n FROM cases WHERE {OPEN_CASE} "
                                 "GROUP BY urgency ORDER BY min(urgency_rank)")
        per_status = self._read("SELECT status, count(*) AS n FROM cases GROUP BY status ORDER BY n DESC, status")
        sums = "".join(f", sum(CASE WHEN created_at >= ? THEN 1 ELSE 0 END) AS b{i}" for i in range(len(newer_than)))
        waiting = self._read(f"SELECT urgency, count(*) AS n, min(created_at) AS oldest{sums} FROM cases "
                             f"WHERE {IN_QUEUE} GROUP BY urgency ORDER BY min(urgency_rank)", tuple(newer_than))
        return {
            "total": int(self._read("SELECT count(*) FROM cases")[0][0]),
            "per_agency": [dict(r) for r in per_agency],
            "per_urgency": [dict(r) for r in per_urgency],
            "per_status": [dict(r) for r in per_status],
            "waiting": [{"urgency": r["urgency"], "n": r["n"], "oldest": r["oldest"],
                         "newer": [int(r[f"b{i}"] or 0) for i in range(len(newer_than))]} for r in waiting],
        }

    def correction_rates(self, since: str, by: str) -> list[dict[str, Any]]:
        """Per week (its Monday) and predicted ``by`` ("topic" or "agency"), of the cases created since
        ``since``: how many there were (``n``) and how many a reviewer changed (``changed``)."""
        if by not in ("topic", "agency"):
            raise ValueError(f"by {by!r} is not one of: topic, agency")
        key = "'$.topics[0]'" if by == "topic" else "'$.agencies[0]'"
        rows = self._read(
            f"SELECT date(substr(created_at, 1, 10), '-6 days', 'weekday 1') AS week, "
            f"json_extract(prediction, {key}) AS label, count(*) AS n, sum(id IN ({CHANGED_CASES})) AS changed "
            "FROM cases WHERE created_at >= ? GROUP BY week, label ORDER BY week, label", (since,))
        return [{"week": r["week"], "label": r["label"], "n": int(r["n"]), "changed": int(r["changed"] or 0)}
                for r in rows]

    def corrections_since(self, since: str) -> int:
        """How many corrections reviewers made since a time (e.g. since the served model was trained)."""
        return int(self._read("SELECT count(*) FROM corrections WHERE at >= ?", (since,))[0][0])

    def correct_at_version(self, case_id: int, version: str, reviewer: str, reason: str, topics: list[str] | None,
                           urgency: str | None, urgency_rank: int | None,
                           agencies: list[str] | None) -> dict[str, Any]:
        """``add_correction``, only if the case is still at ``version`` (its ``updated_at``); else StaleError.

        For a form opened at ``version``: a second tab or a double submit then changes nothing.
        """
        with self._lock, self._claimed(case_id, version):
            return self.add_correction(case_id, reviewer, reason, topics, urgency, urgency_rank, agencies)

    def change_status_at_version(self, case_id: int, version: str, status: str, agency: str | None, actor: str,
                                 note: str | None, *, public_note: str | None = None,
                                 reason: str | None = None) -> dict[str, Any]:
        """``change_status``, only if the case is still at ``version`` (see ``correct_at_version``)."""
        with self._lock, self._claimed(case_id, version):
            return self.change_status(case_id, status, agency, actor, note, public_note=public_note, reason=reason)

    @contextmanager
    def _claimed(self, case_id: int, version: str) -> Iterator[None]:
        """Move the case off ``version`` in one conditional UPDATE, so that of two writers (threads or
        worker processes) holding the same version exactly one proceeds and the other gets StaleError.
        If the write that follows fails (e.g. a refused transition), the version is put back."""
        claim = now()
        with self._write() as db:
            moved = db.execute("UPDATE cases SET updated_at = ? WHERE id = ? AND updated_at = ?",
                               (claim, case_id, version)).rowcount
            if moved == 0:
                current = self._get(db, case_id)["updated_at"]  # NotFoundError if there is no such case
                raise StaleError(f"case {case_id} was changed at {current}, after this form was opened "
                                 f"(at version {version}); nothing was saved")
        try:
            yield
        except BaseException:
            with self._write() as db:
                db.execute("UPDATE cases SET updated_at = ? WHERE id = ? AND updated_at = ?", (version, case_id, claim))
            raise


OPEN_CASE = "status NOT IN ('resolved', 'rejected')"
QUEUE_ORDER = "CASE WHEN deadline < ? THEN 1 ELSE 0 END DESC, urgency_rank, created_at, id"
"""The review queue's order: cases past their deadline first, then most urgent, then oldest."""
IN_QUEUE = f"needs_review = 1 AND {OPEN_CASE}"
CHANGED_CASES = """
    SELECT case_id FROM corrections
    WHERE (topics IS NOT NULL AND json_extract(topics, '$') IS NOT json_extract(before, '$.topics'))
       OR (urgency IS NOT NULL AND urgency IS NOT json_extract(before, '$.urgency'))
       OR (agencies IS NOT NULL AND json_extract(agencies, '$') IS NOT json_extract(before, '$.agencies'))
"""
"""Cases where a reviewer changed a label (a correction that confirms the labels changes nothing)."""


class ReviewStore(Store, Protocol):
    """What the review pages need on top of ``Store`` (see the ``SQLiteStore`` methods of the same names)."""

    def review_queue_filtered(self, limit: int = 50, offset: int = 0, *, agency: str | None = None,
                              urgency: str | None = None, district: str | None = None,
                              status: str | None = None) -> tuple[list[dict[str, Any]], int]: ...
    def queue_facets(self) -> dict[str, list[str]]: ...
    def overview_counts(self, newer_than: list[str]) -> dict[str, Any]: ...
    def correction_rates(self, since: str, by: str) -> list[dict[str, Any]]: ...
    def corrections_since(self, since: str) -> int: ...
    def deadlines(self, now: str, limit: int = 30) -> list[dict[str, Any]]: ...
    def escalations(self, limit: int = 20) -> list[dict[str, Any]]: ...
    def agency_ratings(self, now: str, limit: int = 50) -> list[dict[str, Any]]: ...
    def feedback_for(self, case_id: int) -> list[dict[str, Any]]: ...
    def overdue_cases(self, now: str, limit: int = 500) -> list[dict[str, Any]]: ...
    def due_events(self, now: str, limit: int = 50) -> list[dict[str, Any]]: ...
    def claim_event(self, event_id: str, next_at: str, until: str) -> bool: ...
    def event_delivered(self, event_id: str, at: str) -> None: ...
    def event_failed(self, event_id: str, next_at: str, error: str) -> None: ...
    def correct_at_version(self, case_id: int, version: str, reviewer: str, reason: str, topics: list[str] | None,
                           urgency: str | None, urgency_rank: int | None,
                           agencies: list[str] | None) -> dict[str, Any]: ...
    def change_status_at_version(self, case_id: int, version: str, status: str, agency: str | None, actor: str,
                                 note: str | None, *, public_note: str | None = None,
                                 reason: str | None = None) -> dict[str, Any]: ...
    def create_session(self, session_id: str, name: str, key_hmac: str, key_id: str, seconds: int) -> None: ...
    def get_session(self, session_id: str) -> dict[str, Any] | None: ...
    def revoke_session(self, session_id: str) -> bool: ...
