"""Throttling counters shared by every worker process of the service (issue 9).

serve.py runs one worker process per core by default. The counters that throttle a client must then
be one set for all of them, or N workers would let a client try N times as often before it is
stopped. They live in a small SQLite file of their own, ``limits.db`` in the data folder (0600; it
holds client addresses), which every worker on this machine opens:

- ``FailureLimiter``: at most ``limit`` failures (wrong API keys, failed review logins) per client
  in a sliding ``window`` of seconds; over it, every attempt from that client is refused with 429
  and ``Retry-After`` until its failures age out, the right key included, so guessing stops paying.
- ``RateLimiter``: a token bucket per client (the complainant's tracking lookups).

Why a file of its own and not the case database: the failure check runs before every keyed request
(the ``POST /v1/triage`` hot path included), so it must never wait for the case store's lock or a
group commit; the counters are short-lived (a restart forgetting them is harmless), so they need no
migration, backup or PostgreSQL table. In WAL mode a reader never waits for a writer, each write is
one short transaction, and the writes of all processes are serialised by SQLite's lock, which is what
makes the limits exact across processes:

- a failure is counted in one ``BEGIN IMMEDIATE`` transaction that first counts the client's recent
  failures; when ``limit`` are already there, the attempt is not counted and is refused (429), as
  one process would have refused it at its check. So at most ``limit`` wrong keys in any window are
  ever answered 401, however many workers race.
- a tracking lookup takes its token with one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``.

Times are wall-clock seconds (``time.time()``, the same in every process). With several replicas on
other machines (PostgreSQL), each machine keeps its own counters, as its data folder is its own.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from triage.errors import StorageError
from triage.store import _into_wal
from triage.store_sessions import private_file

_SCHEMA = """
    CREATE TABLE IF NOT EXISTS failures (kind TEXT NOT NULL, client TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS failures_client ON failures(kind, client, at);
    CREATE INDEX IF NOT EXISTS failures_aged ON failures(kind, at);
    CREATE TABLE IF NOT EXISTS buckets (client TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL,
                                        ok INTEGER NOT NULL) WITHOUT ROWID;
"""
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


class LimitsFile:
    """The shared counters' SQLite file, opened on first use in each process (thread-safe).

    Two connections, each with its own lock: one for the writes, one for the check before every keyed
    request, so that check never waits behind this process's writer (which may be sleeping in SQLite's
    busy handler while another process writes)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path, self.timeout = path, timeout
        self._db: dict[bool, sqlite3.Connection] = {}
        self._locks = {True: threading.Lock(), False: threading.Lock()}

    def _open(self) -> sqlite3.Connection:
        try:
            private_file(self.path)
            db = sqlite3.connect(str(self.path), timeout=self.timeout, check_same_thread=False,
                                 isolation_level=None)
            _into_wal(db, self.timeout)  # the case store's switch to WAL, retried while another process opens
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses no commit
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the throttling counters {self.path}: {exc}") from exc
        return db

    def open(self) -> None:
        """Open the file now (else at first use); StorageError if it cannot be."""
        self.run(lambda _db: None, write=True)
        self.run(lambda _db: None, write=False)

    def run(self, work: Any, write: bool = True) -> Any:
        """``work(connection)`` on the writing (or reading) connection under its lock; SQLite errors
        become StorageError."""
        with self._locks[write]:
            db = self._db.get(write)
            if db is None:
                db = self._db[write] = self._open()
            try:
                return work(db)
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StorageError(f"the throttling counters could not be used: {exc}") from exc

    def close(self) -> None:
        for write, lock in self._locks.items():
            with lock:
                db = self._db.pop(write, None)
                if db is not None:
                    db.close()


class FailureLimiter:
    """At most ``limit`` failures of one ``kind`` per client in a sliding ``window`` of seconds, counted
    in ``file`` for every process that opens it.

    ``retry_after(client)`` is None while the client may try, else the whole seconds until its oldest
    counted failure ages out. ``fail(client)`` counts a failure and returns None, or, when the client
    already has ``limit`` (another process counted them since this one's check), counts nothing and
    returns the seconds to wait: that attempt must be refused as throttled.
    """

    def __init__(self, file: LimitsFile, kind: str, limit: int, window: float = 60.0) -> None:
        self.file, self.kind, self.limit, self.window = file, kind, limit, window

    def _wait(self, db: sqlite3.Connection, client: str, now: float) -> int | None:
        count, oldest = db.execute("SELECT count(*), min(at) FROM failures WHERE kind = ? AND client = ? AND at > ?",
                                   (self.kind, client, now - self.window)).fetchone()
        if count < self.limit:
            return None
        return max(1, math.ceil(oldest + self.window - now))

    def retry_after(self, client: str, now: float | None = None) -> int | None:
        at = time.time() if now is None else now
        wait: int | None = self.file.run(lambda db: self._wait(db, client, at), write=False)
        return wait

    def fail(self, client: str, now: float | None = None) -> int | None:
        at = time.time() if now is None else now

        def count(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")
            wait = self._wait(db, client, at)
            if wait is None:
                db.execute("INSERT INTO failures (kind, client, at) VALUES (?, ?, ?)", (self.kind, client, at))
                # failures are rare: forget the ones that aged out, of every client, on the way
                db.execute("DELETE FROM failures WHERE kind = ? AND at <= ?", (self.kind, at - self.window))
            db.execute("COMMIT")
            return wait

        wait: int | None = self.file.run(count)
        return wait


_TAKE = """
    INSERT INTO buckets (client, tokens, at, ok) VALUES (:client, :burst - 1, :now, 1)
    ON CONFLICT (client) DO UPDATE SET
        ok = min(:burst, tokens + max(0.0, :now - at) * :rate) >= 1.0,
        tokens = min(:burst, tokens + max(0.0, :now - at) * :rate)
                 - (min(:burst, tokens + max(0.0, :now - at) * :rate) >= 1.0),
        at = max(at, :now)
"""


class RateLimiter:
    """A token bucket per client, shared through ``file``: ``per_minute`` requests a minute on average,
    ``burst`` at once.

    A bucket that has filled up again is the same as none: such rows are deleted every
    ``purge_seconds`` (by whichever process gets there), so the table holds only clients seen in the
    last ``burst / rate`` seconds.
    """

    def __init__(self, file: LimitsFile, per_minute: float, burst: int, purge_seconds: float = 30.0) -> None:
        self.file = file
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.purge_seconds = purge_seconds
        self._next_purge = 0.0

    def allow(self, client: str, now: float | None = None) -> tuple[bool, float]:
        """Take one token for ``client``: (allowed, seconds until the next token if refused)."""
        at = time.time() if now is None else now
        params = {"client": client, "burst": self.burst, "now": at, "rate": self.rate}

        def take(db: sqlite3.Connection) -> tuple[int, float]:
            if at >= self._next_purge:
                self._next_purge = at + self.purge_seconds
                db.execute("DELETE FROM buckets WHERE at < ?", (at - self.burst / self.rate,))
            if _RETURNING:
                row = db.execute(_TAKE + " RETURNING ok, tokens", params).fetchone()
                return int(row[0]), float(row[1])
            db.execute("BEGIN IMMEDIATE")
            db.execute(_TAKE, params)
            row = db.execute("SELECT ok, tokens FROM buckets WHERE client = ?", (client,)).fetchone()
            db.execute("COMMIT")
            return int(row[0]), float(row[1])

        ok, tokens = self.file.run(take)
        return bool(ok), 0.0 if ok else (1.0 - tokens) / self.rate
