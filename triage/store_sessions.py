"""Review-page sessions in the case store, and the file modes of the data folder (issue 13).

A session cookie is signed, but a signature alone cannot be taken back: a copied cookie would
work until it expires. So each login is also a row here, looked up on every request, and a
logout (or an expiry) ends it for every copy of the cookie and in every worker process. The
row holds a hash of the session id, never the id itself, and an HMAC of the API key, never the key.

The data folder is made 0700 and the database file 0600 before SQLite opens it (SQLite gives
its ``-wal`` and ``-shm`` files the database's mode), whatever the process umask.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SESSIONS_MIGRATION = """
    CREATE TABLE review_sessions (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        name TEXT NOT NULL,
        key_hmac TEXT NOT NULL,
        key_id TEXT NOT NULL
    );
    CREATE INDEX review_sessions_expiry ON review_sessions(expires_at)
"""


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with the last folder readable by its owner only (0700).

    A folder that exists already keeps its mode: an operator may have set it up on purpose.
    """
    if path.is_dir():
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """Make sure the file ``path`` exists, creating it (and its folder, 0700) with mode 0600 when it does not."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


def session_key(session_id: str) -> str:
    """What the store keeps for a session id: its SHA-256, so a copy of the database opens no session."""
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class SessionsMixin:
    """Session rows for ``SQLiteStore`` (uses its ``_write`` and ``_read``)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # SQLiteStore's: one write transaction

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError  # SQLiteStore's: a read under its lock

    def create_session(self, session_id: str, name: str, key_hmac: str, key_id: str, seconds: int) -> None:
        """Record a new session valid for ``seconds``; sessions that ended are dropped on the way."""
        now = _now()
        with self._write() as db:
            db.execute("DELETE FROM review_sessions WHERE expires_at < ?", (now.isoformat(),))
            db.execute("INSERT INTO review_sessions (id, created_at, expires_at, name, key_hmac, key_id) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (session_key(session_id), now.isoformat(), (now + timedelta(seconds=seconds)).isoformat(),
                        name, key_hmac, key_id))

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        """The live session with this id (not revoked, not expired), or None."""
        rows = self._read("SELECT name, key_hmac, key_id, created_at, expires_at FROM review_sessions "
                          "WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
                          (session_key(session_id), _now().isoformat()))
        return dict(rows[0]) if rows else None

    def revoke_session(self, session_id: str) -> bool:
        """End a session (logout); True if it was live."""
        with self._write() as db:
            return db.execute("UPDATE review_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                              (_now().isoformat(), session_key(session_id))).rowcount > 0

    def live_sessions(self) -> Iterator[dict[str, Any]]:
        """Sessions that are neither revoked nor expired (for an operator's look)."""
        rows = self._read("SELECT created_at, expires_at, name, key_id FROM review_sessions "
                          "WHERE revoked_at IS NULL AND expires_at > ? ORDER BY created_at", (_now().isoformat(),))
        return (dict(r) for r in rows)
