"""The same behaviour on both backends: one script of writes on a SQLite file and on a PostgreSQL
database, then every read the API and the review pages use, compared (times, random codes and hours
that depend on the clock are blanked; everything else must be equal, ids and order included)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from test_store import record

from triage.database import open_store
from triage.errors import ConflictError, NotFoundError
from triage.sla import escalate_overdue

CLOCKED = {"at", "created_at", "updated_at", "deadline", "deadline_from", "next_at", "delivered_at", "oldest",
           "expires_at", "revoked_at", "tracking_code", "event_id", "body", "week", "accept_hours", "resolve_hours"}
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00")
A, B, C = "สำนักงานเขตบางรัก", "การไฟฟ้านครหลวง", "สำนักงานเขตพญาไท"


def blank(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: blank(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [blank(v) for v in value]
    if key in CLOCKED and value is not None:
        return "<clock>"
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):  # e.g. the deadline named in an escalation's note
        return ISO_TIME.sub("<clock>", value)
    return value


def script(url: str) -> dict[str, Any]:
    store = open_store(url, sla_hours={"high": 24, "medium": 0.0002, "low": 360}, webhooks=True)
    try:
        made = [c for c, _ in store.create_cases([
            record("ไฟดับทั้งซอย", external_id="e-1"), record("ถนนพัง", urgency="high", urgency_rank=0),
            record("น้ำท่วม", urgency="low", urgency_rank=2, district="ดุสิต", agencies=[B, C]),
            record("ขยะ", needs_review=False, review_reasons=[]), record("ไม่รู้", agencies=[])])]
        ids = [c["id"] for c in made]
        store.add_correction(ids[0], "r1", "wrong", ["ถนน"], "high", 0, [B])
        store.add_correction(ids[1], "r2", "confirm", ["ไฟฟ้า"], "high", 0, None)
        store.change_status(ids[1], "forwarded", B, "s", "not ours", public_note="ส่งต่อแล้ว")
        store.change_status(ids[1], "assigned", None, "s", None)
        store.change_status(ids[1], "resolved", None, "s", "done", public_note="แก้ไขแล้ว")
        store.add_feedback(ids[1], 4, "ดี", False)
        with pytest.raises(ConflictError):
            store.add_feedback(ids[1], 1, None, True)
        store.change_status(ids[2], "rejected", None, "s", None, reason="spam")
        with pytest.raises(ConflictError, match="loop"):
            store.change_status(ids[0], "forwarded", B, "s", None)
        time.sleep(1.0)  # medium cases are overdue now
        moved = escalate_overdue(store, None, "ส่วนกลาง")
        store.create_session("sid-1", "สมศรี", "hmac", "key-1", 3600)
        store.create_session("sid-2", "สมชาย", "hmac", "key-2", 3600)
        store.revoke_session("sid-2")
        again = store.create_cases_each([record("ไฟดับทั้งซอย", external_id="e-1"), record("อื่น", external_id="e-1")])
        with pytest.raises(NotFoundError):
            store.get_case(999)
        now = "9999-01-01T00:00:00+00:00"
        out: dict[str, Any] = {
            "moved": moved, "again": [a if isinstance(a, tuple) else type(a).__name__ for a in again],
            "cases": [store.get_case(i) for i in ids], "list": store.list_cases(limit=3),
            "list_filtered": store.list_cases(status="new", needs_review=True),
            "queue": store.review_queue(), "queue_b": store.review_queue_filtered(agency=B),
            "queue_dusit": store.review_queue_filtered(district="ดุสิต", status="rejected"),
            "facets": store.queue_facets(), "overview": store.overview_counts(["2000-01-01", now]),
            "rates_topic": store.correction_rates("2000-01-01", "topic"),
            "rates_agency": store.correction_rates("2000-01-01", "agency"),
            "corrections_since": store.corrections_since("2000-01-01"),
            "deadlines": store.deadlines(now), "escalations": store.escalations(),
            "ratings": store.agency_ratings(now), "feedback": store.feedback_for(ids[1]),
            "overdue": store.overdue_cases(now), "due": store.due_events(now),
            "outbox": store.outbox_counts(),  # type: ignore[attr-defined]
            "events": [store.events_for(i) for i in ids], "history": [store.history(i) for i in ids],
            "corrections": [store.corrections(i) for i in ids], "corrected": list(store.corrected_cases()),
            "before": [store.agency_corrected_before("ไฟฟ้า", A), store.agency_corrected_before("ไฟฟ้า", C)],
            "tracking": store.find_tracking(made[3]["tracking_code"]), "external": store.find_external("e-1"),
            "session": store.get_session("sid-1"), "revoked": store.get_session("sid-2"),
            "live": list(store.live_sessions()),  # type: ignore[attr-defined]
            "integrity": store.integrity(),  # type: ignore[attr-defined]
        }
        return blank(out)
    finally:
        store.close()


def test_every_read_gives_the_same_on_both_backends(tmp_path, pg_url):
    on_sqlite = script(f"sqlite:///{tmp_path / 'same.db'}")
    on_postgres = script(pg_url)
    assert on_sqlite["moved"] and on_sqlite["outbox"]["total"] > 0 and on_sqlite["ratings"]  # the script did things
    for key in on_sqlite:
        assert on_postgres[key] == on_sqlite[key], key
