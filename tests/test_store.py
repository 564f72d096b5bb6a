"""The case store on both backends (a real SQLite file, a real PostgreSQL database): migrations, idempotency,
workflow, audit trail, threads."""

from __future__ import annotations

import sqlite3
import threading
import uuid

import psycopg
import pytest

from triage.database import open_store
from triage.errors import ConfigError, ConflictError, NotFoundError, StaleError, StorageError
from triage.migrate import HEAD
from triage.store import MIGRATIONS, SQLiteStore


def record(text: str = "ไฟดับ", external_id: str | None = None, **extra: object) -> dict:
    rec = {"text": text, "masked_text": text, "district": "บางรัก", "source": "test", "external_id": external_id,
           "reporter_contact": None, "model_version": "m1",
           "prediction": {"topics": ["ไฟฟ้า"], "agencies": ["สำนักงานเขตบางรัก"]}, "topics": ["ไฟฟ้า"],
           "urgency": "medium", "urgency_rank": 1, "agencies": ["สำนักงานเขตบางรัก"], "needs_review": True,
           "review_reasons": ["low_confidence"]}
    rec.update(extra)
    return rec


@pytest.fixture()
def store(db_url: str):
    s = open_store(db_url)
    yield s
    s.close()


def test_migrations_are_numbered_and_applied_once(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    s.close()
    again = open_store(str(tmp_path / "a.db"))
    db = sqlite3.connect(tmp_path / "a.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    with pytest.raises(ConfigError, match="upgrade the code"):
        SQLiteStore(tmp_path / "a.db")


def test_postgresql_migrations_are_alembic_revisions_applied_once(pg_cluster):
    url = pg_cluster.create_database("fresh")
    open_store(url).close()
    again = open_store(url)  # at the newest revision: nothing to do
    again.close()
    with psycopg.connect(url, autocommit=True) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD == "0003"
        tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"cases", "events", "corrections", "outbox", "feedback", "review_sessions"} <= tables
        db.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(ConfigError, match="upgrade the code"):
        open_store(url)


def test_a_sqlite_file_from_before_alembic_is_stamped_not_migrated_again(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")
    for script in MIGRATIONS:  # what the numbered migrations left behind, with a case in it
        db.executescript(script)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    db.commit()
    db.close()
    s = open_store(str(tmp_path / "old.db"))
    (case, _), = s.create_cases([record()])
    assert s.get_case(case["id"])["tracking_code"]
    s.close()
    db = sqlite3.connect(tmp_path / "old.db")
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_first_opens_migrate_once(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'first.db'}"
    else:  # a database nothing has migrated yet
        url = request.getfixturevalue("pg_cluster").create_database(f"first_{uuid.uuid4().hex[:8]}")
    opened, errors = [], []

    def open_one() -> None:
        try:
            opened.append(open_store(url))
        except Exception as exc:  # the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    (case, _), = opened[0].create_cases([record()])
    assert opened[3].get_case(case["id"])["status"] == "new"
    for s in opened:
        s.close()


def test_unknown_database_urls_are_refused(tmp_path):
    with pytest.raises(StorageError, match="PostgreSQL case database postgresql://u:\\*\\*\\*@db/triage"):
        open_store("postgresql://u:secret@db/triage")
    with pytest.raises(ConfigError, match="not one of"):
        open_store("mysql://db/triage")


def test_create_and_idempotent_external_id(store):
    (case, created), = store.create_cases([record(external_id="x-1")])
    assert created and case["status"] == "new" and case["agency"] == "สำนักงานเขตบางรัก"
    (again, created2), = store.create_cases([record(external_id="x-1")])
    assert not created2 and again["id"] == case["id"]
    with pytest.raises(ConflictError, match="x-1"):
        store.create_cases([record("อื่น", external_id="x-1")])
    assert [e["kind"] for e in store.history(case["id"])] == ["created"]


def test_a_failed_batch_stores_nothing(store):
    store.create_cases([record(external_id="a")])
    with pytest.raises(ConflictError):
        store.create_cases([record(external_id="b"), record("different", external_id="a")])
    assert store.find_external("b") is None
    assert len(store.list_cases()[0]) == 1


def test_concurrent_duplicates_make_one_case(store):
    ids: list[int] = []

    def post() -> None:
        (case, _), = store.create_cases([record(external_id="same")])
        ids.append(case["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 8


def test_workflow_and_forwarding_loops(store):
    (case, _), = store.create_cases([record()])
    cid = case["id"]
    with pytest.raises(ConflictError, match="allowed: assigned"):
        store.change_status(cid, "resolved", None, "s", None)
    store.change_status(cid, "forwarded", "การไฟฟ้านครหลวง", "s", "not ours")
    with pytest.raises(ConflictError, match="loop"):
        store.change_status(cid, "forwarded", "สำนักงานเขตบางรัก", "s", None)
    case = store.change_status(cid, "assigned", None, "s", None)
    assert case["agency"] == "การไฟฟ้านครหลวง" and case["agency_path"] == ["สำนักงานเขตบางรัก", "การไฟฟ้านครหลวง"]
    store.change_status(cid, "resolved", None, "s", "done")
    with pytest.raises(ConflictError, match="closed"):
        store.change_status(cid, "in_progress", None, "s", None)
    with pytest.raises(NotFoundError):
        store.change_status(999, "assigned", None, "s", None)


def test_corrections_are_an_audit_trail(store):
    (case, _), = store.create_cases([record()])
    store.add_correction(case["id"], "r1", "wrong", ["ถนน"], None, None, None)
    case = store.add_correction(case["id"], "r2", "urgent", None, "high", 0, ["กรมทางหลวง"])
    assert case["topics"] == ["ถนน"] and case["urgency"] == "high" and case["agency"] == "กรมทางหลวง"
    assert not case["needs_review"] and case["corrected"]
    trail = store.corrections(case["id"])
    assert [c["reviewer"] for c in trail] == ["r1", "r2"]
    assert trail[0]["before"]["topics"] == ["ไฟฟ้า"] and trail[1]["before"]["topics"] == ["ถนน"]
    assert store.agency_corrected_before("ไฟฟ้า", "สำนักงานเขตบางรัก")
    assert not store.agency_corrected_before("ถนน", "สำนักงานเขตบางรัก")
    assert [c["id"] for c in store.corrected_cases()] == [case["id"]]


def test_queue_order_urgency_then_age(store):
    made = []
    for rank, urgency in [(2, "low"), (0, "high"), (1, "medium"), (0, "high")]:
        (case, _), = store.create_cases([record(urgency=urgency, urgency_rank=rank)])
        made.append(case["id"])
    (calm, _), = store.create_cases([record(needs_review=False, review_reasons=[])])
    queue, total = store.review_queue()
    assert total == 4 and [c["id"] for c in queue] == [made[1], made[3], made[2], made[0]]
    assert calm["id"] not in [c["id"] for c in queue]


def test_cursor_pagination_newest_first(store):
    ids = [store.create_cases([record(f"เรื่อง {i}")])[0][0]["id"] for i in range(7)]
    page, cursor = store.list_cases(limit=3)
    seen = [c["id"] for c in page]
    while cursor is not None:
        page, cursor = store.list_cases(limit=3, cursor=cursor)
        seen += [c["id"] for c in page]
    assert seen == ids[::-1]


def test_nothing_is_lost_from_many_threads(store):
    def work(n: int) -> None:
        for i in range(20):
            (case, _), = store.create_cases([record(f"t{n} {i}", external_id=f"{n}-{i}")])
            store.add_correction(case["id"], f"r{n}", "x", None, "low", 2, None)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(store.corrected_cases())) == 120
    assert store.integrity() == "ok"


def test_group_commit_stores_a_batch_in_one_transaction_and_a_conflict_alone(store, db_url):
    store.create_cases([record("ถนนพัง", external_id="g-0")])
    batch = [record("ไฟดับ", external_id="g-1"), record("อื่น", external_id="g-0"), record("ขยะ"),
             record("ไฟดับ", external_id="g-1")]
    out = store.create_cases_each(batch)
    assert isinstance(out[1], ConflictError)
    (first, created1), (third, created3), (again, created4) = out[0], out[2], out[3]
    assert created1 and created3 and not created4 and again["id"] == first["id"]
    for case in (first, third):  # what it returns is what a reader gets back
        assert case == store.get_case(case["id"])
    other = open_store(db_url)  # committed: another connection (another replica) sees them
    seen = other.list_cases()[0]
    assert len(seen) == 3 and all([e["kind"] for e in other.history(c["id"])] == ["created"] for c in seen)
    other.close()


# Tests for the survivors of the mutation run over store.py (bench/RESULTS.md, issue 15).

A, B, C = "สำนักงานเขตบางรัก", "การไฟฟ้านครหลวง", "สำนักงานเขตพญาไท"


def test_a_batch_with_a_retry_stores_the_rest_with_every_field(store):
    (first, _), = store.create_cases([record(external_id="r-1")])
    pairs = store.create_cases([record(external_id="r-1"), record("น้ำท่วม", external_id="r-2", district="พญาไท",
                                                                  source="line", reporter_contact="0812345678",
                                                                  urgency="high", urgency_rank=0)])
    assert [(c["id"] == first["id"], created) for c, created in pairs] == [(True, False), (False, True)]
    new = store.get_case(pairs[1][0]["id"])
    assert (new["district"], new["source"], new["reporter_contact"], new["urgency"], new["urgency_rank"]) == (
        "พญาไท", "line", "0812345678", "high", 0)
    assert new["agency_path"] == [A]
    (created_event,) = store.history(new["id"])
    assert {k: created_event[k] for k in ("kind", "from_status", "to_status", "agency", "actor", "note")} == {
        "kind": "created", "from_status": None, "to_status": "new", "agency": A, "actor": "line",
        "note": "triaged by model m1"}
    (unrouted, _), = store.create_cases([record("ไม่รู้", agencies=[])])
    assert unrouted["agency"] is None and unrouted["agency_path"] == []


def test_a_correction_keeps_what_it_changed_and_what_was_there_before(store):
    (case, _), = store.create_cases([record()])
    cid = case["id"]
    case = store.add_correction(cid, "r1", "wrong topic", ["ถนน"], None, None, None)
    assert case["topics"] == ["ถนน"] and case["agencies"] == [A] and case["urgency"] == "medium"
    case = store.add_correction(cid, "r2", "wrong office", None, "high", 0, [B, C])
    assert case["agencies"] == [B, C] and case["agency"] == B and case["agency_path"] == [B]
    assert (case["urgency"], case["urgency_rank"], case["topics"]) == ("high", 0, ["ถนน"])
    first, second = store.corrections(cid)
    assert (first["topics"], first["urgency"], first["agencies"]) == (["ถนน"], None, None)
    assert (second["topics"], second["urgency"], second["agencies"]) == (None, "high", [B, C])
    assert first["before"] == {"topics": ["ไฟฟ้า"], "urgency": "medium", "agencies": [A]}
    assert second["before"] == {"topics": ["ถนน"], "urgency": "medium", "agencies": [A]}
    assert (first["predicted_topic"], first["predicted_agency"]) == ("ไฟฟ้า", A)
    events = [(e["kind"], e["actor"], e["note"]) for e in store.history(cid)[1:]]
    assert events == [("correction", "r1", "corrected topics: wrong topic"),
                      ("correction", "r2", "corrected urgency, agencies: wrong office")]
    # once the case has moved on, a correction of its agencies does not rewrite where it has been
    store.change_status(cid, "forwarded", C, "s", None)
    case = store.add_correction(cid, "r3", "x", None, None, None, [A])
    assert case["agencies"] == [A] and case["agency"] == C and case["agency_path"] == [B, C]


def test_assigning_to_another_agency_moves_the_case_there_once(store):
    (case, _), = store.create_cases([record()])
    cid = case["id"]
    case = store.change_status(cid, "assigned", B, "s1", "theirs")
    assert case["agency"] == B and case["agency_path"] == [A, B]
    case = store.change_status(cid, "in_progress", A, "s2", None)  # back to an office it was at: no new step
    assert case["agency"] == A and case["agency_path"] == [A, B]
    case = store.change_status(cid, "resolved", A, "s3", None)  # the holder again: nothing moves
    assert case["agency"] == A and case["agency_path"] == [A, B]
    events = [(e["kind"], e["from_status"], e["to_status"], e["agency"], e["actor"], e["note"])
              for e in store.history(cid)[1:]]
    assert events == [("status", "new", "assigned", B, "s1", "theirs"), ("status", "assigned", "in_progress", A, "s2", None),
                      ("status", "in_progress", "resolved", A, "s3", None)]


def test_escalation_needs_an_agency_and_cannot_loop(store):
    (case, _), = store.create_cases([record()])
    cid = case["id"]
    with pytest.raises(ConflictError) as err:
        store.change_status(cid, "escalated", None, "s", None)
    assert str(err.value) == "status 'escalated' needs the agency the case goes to"
    with pytest.raises(ConflictError) as err:
        store.change_status(cid, "escalated", A, "s", None)
    assert str(err.value) == (f"case {cid} was already at {A!r} (path: {A}); "
                              "forwarding it there again would make a loop")
    case = store.change_status(cid, "escalated", B, "s", None)
    assert case["agency"] == B and case["agency_path"] == [A, B]
    with pytest.raises(ConflictError) as err:
        store.change_status(cid, "forwarded", A, "s", None)
    assert str(err.value).endswith(f"(path: {A} -> {B}); forwarding it there again would make a loop")
    assert store.get_case(cid)["status"] == "escalated"


def test_refusals_name_the_allowed_steps(store):
    (case, _), = store.create_cases([record(external_id="m-1")])
    cid = case["id"]
    with pytest.raises(ConflictError) as err:
        store.change_status(cid, "resolved", None, "s", None)
    assert str(err.value) == (f"case {cid} cannot go from 'new' to 'resolved'; "
                              "allowed: assigned, in_progress, forwarded, escalated, rejected")
    store.change_status(cid, "rejected", None, "s", None)
    with pytest.raises(ConflictError) as err:
        store.change_status(cid, "assigned", None, "s", None)
    assert str(err.value) == f"case {cid} cannot go from 'rejected' to 'assigned'; allowed: none (the case is closed)"
    with pytest.raises(ConflictError) as err:
        store.create_cases([record("อื่น", external_id="m-1")])
    assert str(err.value) == (f"external_id 'm-1' is already case {cid} with a different text; "
                              "a retry must send the same complaint")


def test_accepting_an_urgent_case_takes_that_reason_off_the_queue(store):
    (case, _), = store.create_cases([record(urgency="high", urgency_rank=0,
                                            review_reasons=["urgent_not_accepted", "low_confidence"])])
    cid = case["id"]
    case = store.change_status(cid, "forwarded", B, "s", None)  # not yet accepted by an agency
    assert case["review_reasons"] == ["urgent_not_accepted", "low_confidence"] and case["needs_review"]
    case = store.change_status(cid, "assigned", None, "s", None)
    assert case["review_reasons"] == ["low_confidence"] and case["needs_review"]
    (only, _), = store.create_cases([record("ด่วน", urgency="high", urgency_rank=0,
                                            review_reasons=["urgent_not_accepted"])])
    only = store.change_status(only["id"], "in_progress", None, "s", None)
    assert only["review_reasons"] == [] and not only["needs_review"]
    assert [c["id"] for c in store.review_queue()[0]] == [cid]


def test_a_stale_version_is_refused_with_the_current_one(store):
    (case, _), = store.create_cases([record()])
    old = case["updated_at"]
    moved = store.change_status_at_version(case["id"], old, "assigned", None, "s", None)
    with pytest.raises(StaleError) as err:
        store.correct_at_version(case["id"], old, "r", "x", None, "low", 2, None)
    assert str(err.value) == (f"case {case['id']} was changed at {moved['updated_at']}, after this form was opened "
                              f"(at version {old}); nothing was saved")
    assert store.corrections(case["id"]) == []


def test_the_migrate_command_brings_either_backend_to_the_newest_revision(tmp_path, pg_cluster, capsys):
    from triage.migrate import main

    assert main([f"sqlite:///{tmp_path / 'cmd.db'}"]) == 0
    assert sqlite3.connect(tmp_path / "cmd.db").execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    url = pg_cluster.create_database("cmd")
    assert main([url]) == 0 and capsys.readouterr().out.count(f"schema at revision {HEAD}") == 2
    with psycopg.connect(url) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD
    assert main(["mysql://x/y"]) == 2 and "not one of" in capsys.readouterr().err


def test_a_new_case_comes_back_with_its_tracking_code_and_deadline_and_a_repeated_code_is_drawn_again(
        tmp_path, monkeypatch):
    import triage.store_followup as followup

    store = SQLiteStore(tmp_path / "t.db")
    (first, _), = store.create_cases([record("ไฟดับ", urgency="high", urgency_rank=0)])
    assert first["tracking_code"] and first["deadline"] > first["created_at"] == first["deadline_from"]
    assert first == store.get_case(first["id"])
    codes = iter([first["tracking_code"], first["tracking_code"], "FRESHCODE0000000", "FRESHCODE0000001"])
    monkeypatch.setattr(followup, "new_tracking_code", lambda: next(codes))  # two collisions, then new codes
    out = store.create_cases_each([record("ถนนพัง"), record("ขยะ", external_id="x-1")])
    assert [c["tracking_code"] for c, _ in out] == ["FRESHCODE0000000", "FRESHCODE0000001"]  # type: ignore[misc]
    assert all(c == store.get_case(c["id"]) for c, _ in out)  # type: ignore[misc]
    monkeypatch.setattr(followup, "new_tracking_code", lambda: first["tracking_code"])
    with pytest.raises(ConflictError, match="unique tracking code"):
        store.create_cases([record("น้ำท่วม")])
    assert store.list_cases()[0][0]["text"] == "ขยะ" and store.integrity() == "ok"  # nothing of it stored
    store.close()
