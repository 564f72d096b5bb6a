"""Several replicas on one database: two store objects (two connection sets, as two serve.py processes
have) on the same SQLite file or PostgreSQL database, racing each other from threads.

Idempotent external ids, one winner per form version, one escalation per overdue case and one claim
per outbox event must hold on both backends; the advisory lock and the reload announcement are
PostgreSQL's (a SQLite file is one machine's, followed through the signal file).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from test_store import record

from triage.database import open_store
from triage.errors import InputError, StaleError
from triage.sla import escalate_overdue


def race(n: int, job: Any) -> list[Any]:
    """Run ``job(i)`` in ``n`` threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = job(i)
        except Exception as exc:  # returned for the assertions
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.fixture()
def replicas(db_url: str):
    a, b = open_store(db_url, webhooks=True), open_store(db_url, webhooks=True)
    yield a, b
    a.close()
    b.close()


def test_retries_to_both_replicas_make_one_case_per_external_id(replicas):
    ids = [f"line-{k}" for k in range(6)]

    def post(i: int) -> list[Any]:  # micro-batches of the same ids in opposite orders, to both replicas
        order = ids if i % 2 else ids[::-1]
        return replicas[i % 2].create_cases_each([record(f"เรื่อง {x}", external_id=x) for x in order])

    results = race(8, post)
    pairs = [p for batch in results for p in batch]
    assert all(isinstance(p, tuple) for p in pairs), [p for p in pairs if not isinstance(p, tuple)]
    by_id: dict[str, set[int]] = {}
    for case, _created in pairs:
        by_id.setdefault(case["external_id"], set()).add(case["id"])
    assert {k: len(v) for k, v in by_id.items()} == dict.fromkeys(ids, 1)
    assert sum(created for _case, created in pairs) == len(ids)
    assert len(replicas[0].list_cases(limit=100)[0]) == len(ids)
    assert replicas[1].integrity() == "ok"


def test_one_writer_wins_per_form_version_across_replicas(replicas):
    a, b = replicas
    for round_ in range(5):
        (case, _), = a.create_cases([record(f"ไฟดับ {round_}")])
        version = case["updated_at"]
        results = race(2, lambda i, cid=case["id"], v=version: (a, b)[i].change_status_at_version(
            cid, v, ("assigned", "in_progress")[i], None, f"s{i}", None))
        assert sorted(type(r).__name__ for r in results) == ["StaleError", "dict"]
        steps = [e for e in b.history(case["id"]) if e["kind"] == "status"]
        assert len(steps) == 1
        winner = next(r for r in results if isinstance(r, dict))
        assert b.get_case(case["id"])["status"] == winner["status"] == steps[0]["to_status"]
        with pytest.raises(StaleError):  # the loser's form stays stale
            b.correct_at_version(case["id"], version, "r", "x", None, "low", 2, None)


def test_an_overdue_case_is_escalated_once_by_two_replicas(replicas):
    a, b = replicas
    for s in replicas:
        s.configure_followup({"high": 24, "medium": 0.0002, "low": 360}, webhooks=True)  # medium: 0.72 s
    made = [a.create_cases([record(f"ถนนพัง {k}")])[0][0]["id"] for k in range(5)]
    time.sleep(1.0)
    results = race(4, lambda i: escalate_overdue((a, b)[i % 2], None, "ส่วนกลาง"))
    assert not any(isinstance(r, Exception) for r in results), results
    moved = Counter(m["case_id"] for r in results for m in r)
    assert moved == dict.fromkeys(made, 1)
    for cid in made:
        steps = [e for e in a.history(cid) if e["to_status"] == "escalated"]
        assert len(steps) == 1 and steps[0]["reason"] == "overdue" and steps[0]["agency"] == "ส่วนกลาง"


def test_an_outbox_event_is_claimed_by_one_replica(replicas):
    a, b = replicas
    (case, _), = a.create_cases([record()])
    a.change_status(case["id"], "assigned", None, "s", None)
    (event,) = a.due_events("9999")
    assert [e["event_id"] for e in b.due_events("9999")] == [event["event_id"]]
    results = race(2, lambda i: (a, b)[i].claim_event(event["event_id"], event["next_at"], "9999-01-01"))
    assert sorted(results) == [False, True]
    assert a.due_events("9000") == []  # leased: nobody sees it until the lease ends


def test_the_deadline_pass_runs_in_one_replica_at_a_time(pg_url):
    from triage.app import exclusive

    a, b = open_store(pg_url), open_store(pg_url)
    try:
        with exclusive(a, "deadline-check") as first:
            with exclusive(b, "deadline-check") as second:
                assert first and not second
            with exclusive(b, "outbox") as other:  # another job's lock is another lock
                assert other
        with exclusive(b, "deadline-check") as later:
            assert later
    finally:
        a.close()
        b.close()


def test_a_reload_is_announced_to_the_other_replicas(pg_url):
    a, b = open_store(pg_url), open_store(pg_url)
    heard = {"a": threading.Event(), "b": threading.Event()}
    try:
        a.follow_reloads(heard["a"].set)
        b.follow_reloads(heard["b"].set)
        time.sleep(0.5)  # both are listening
        a.announce_reload()
        assert heard["b"].wait(10)
        time.sleep(1.0)
        assert not heard["a"].is_set()  # the announcer reloaded already
    finally:
        a.close()
        b.close()


def test_postgresql_refuses_a_nul_character_as_bad_input_alone(pg_url):
    s = open_store(pg_url)
    try:
        out = s.create_cases_each([record("ไฟดับ\x00"), record("ถนนพัง")])
        assert isinstance(out[0], InputError) and "NUL" in str(out[0])
        assert isinstance(out[1], tuple) and out[1][1]
        assert [c["text"] for c in s.list_cases()[0]] == ["ถนนพัง"]
    finally:
        s.close()
