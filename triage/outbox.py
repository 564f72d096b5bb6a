"""Webhooks: every status change of a case, POSTed as signed JSON to ``TRIAGE_WEBHOOK_URL``.

The store writes each event into its ``outbox`` table in the same transaction as the change (so a
change is never lost and never announced without having happened); ``Deliverer``, a background
thread of the service, POSTs the events oldest first and marks each delivered on a 2xx answer. An
error, a refusal, a non-2xx answer or no answer within ``TRIAGE_WEBHOOK_TIMEOUT`` seconds counts as
a failure: the event is retried after ``TRIAGE_WEBHOOK_RETRY_SECONDS``, doubling up to
``TRIAGE_WEBHOOK_MAX_BACKOFF``, for as long as it takes, across restarts (the table is on disk).
Delivery is at least once: a receiver drops repeats by ``event_id``. Events of one case go out in
order (a later one waits for an earlier one that is still failing). Requests never wait for a
delivery, and a receiver that hangs only holds up this thread, for at most the timeout.

Body: ``{"event_id", "case_id", "tracking_code", "status", "agency", "at", "public_note"}`` (UTF-8
JSON, keys in this order); header ``X-Triage-Signature: sha256=<hex HMAC-SHA256 of the body>``
with ``TRIAGE_WEBHOOK_SECRET``. A receiver checks it over the raw body before parsing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger("triage.outbox")

SIGNATURE_HEADER = "X-Triage-Signature"
LEASE_SECONDS = 5.0
"""Besides the timeout: how long a claimed event is left alone by other worker processes."""


def event_body(case_id: int, tracking_code: str | None, status: str, agency: str | None, at: str,
               public_note: str | None, event_id: str | None = None) -> str:
    """The JSON body of one event (no internal note, no text, no contact: only public fields)."""
    return json.dumps({"event_id": event_id or uuid.uuid4().hex, "case_id": case_id, "tracking_code": tracking_code,
                       "status": status, "agency": agency, "at": at, "public_note": public_note},
                      ensure_ascii=False)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Triage-Signature`` value of a body: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare the header with the body's signature in constant time."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def backoff(attempts: int, first: float, cap: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: first, 2x, 4x, ... at most ``cap``."""
    return float(min(cap, first * (2 ** max(0, min(attempts - 1, 30)))))


class OutboxStore(Protocol):
    def due_events(self, now: str, limit: int = 50) -> list[dict[str, Any]]: ...
    def claim_event(self, event_id: str, next_at: str, until: str) -> bool: ...
    def event_delivered(self, event_id: str, at: str) -> None: ...
    def event_failed(self, event_id: str, next_at: str, error: str) -> None: ...


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


class Deliverer:
    """Delivers the outbox in a daemon thread: a pass right after a change (``wake``) and every ``idle`` s."""

    def __init__(self, store: OutboxStore, url: str, secret: str, timeout: float = 5.0, first_retry: float = 5.0,
                 max_backoff: float = 3600.0, idle: float = 1.0) -> None:
        self.store, self.url, self.secret = store, url, secret
        self.timeout, self.first_retry, self.max_backoff, self.idle = timeout, first_retry, max_backoff, idle
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)

    def start(self) -> Deliverer:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("webhook delivery pass failed")
            self._wake.wait(self.idle)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One pass: try every due event once. Returns how many were delivered."""
        delivered = 0
        now = datetime.now(UTC)
        for event in self.store.due_events(_iso(now)):
            if self._stop.is_set():
                break
            until = _iso(datetime.now(UTC) + timedelta(seconds=self.timeout + LEASE_SECONDS))
            if not self.store.claim_event(event["event_id"], event["next_at"], until):
                continue  # another worker process took it
            error = self.post(event["body"])
            if error is None:
                self.store.event_delivered(event["event_id"], _iso(datetime.now(UTC)))
                delivered += 1
            else:
                attempts = int(event["attempts"]) + 1
                wait = backoff(attempts, self.first_retry, self.max_backoff)
                self.store.event_failed(event["event_id"], _iso(datetime.now(UTC) + timedelta(seconds=wait)), error)
                log.warning("webhook event %s for case %s failed (attempt %d, next in %.1f s): %s",
                            event["event_id"], event["case_id"], attempts, wait, error)
        return delivered

    def post(self, body: str) -> str | None:
        """POST one body; None on a 2xx answer, else what went wrong (no body content in it)."""
        data = body.encode("utf-8")
        request = urllib.request.Request(self.url, data=data, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: signature(self.secret, data),
            "User-Agent": "triage-webhook/1"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(65536)
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"{type(exc).__name__}: {reason}"[:300]
