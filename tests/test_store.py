"""The SQLite case store on real files: migrations, idempotency, workflow, audit trail, threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from triage.errors import ConfigError, ConflictError, NotFoundError
from triage.store import MIGRATIONS, SQLiteStore, open_store


def record(text: str = "ไฟดับ", external_id: str | None = None, **extra: object) -> dict:
    rec = {"text": text, "masked_text": text, "district": "บางรัก", "source": "test", "external_id": external_id,
           "reporter_contact": None, "model_version": "m1",
           "prediction": {"topics": ["ไฟฟ้า"], "agencies": ["สำนักงานเขตบางรัก"]}, "topics": ["ไฟฟ้า"],
           "urgency": "medium", "urgency_rank": 1, "agencies": ["สำนักงานเขตบางรัก"], "needs_review": True,
           "review_reasons": ["low_confidence"]}
    rec.update(extra)
    return rec


@pytest.fixture()
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "cases.db")
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


def test_unknown_database_urls_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="PostgreSQL"):
        open_store("postgresql://db/triage")
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


def test_group_commit_stores_a_batch_in_one_transaction_and_a_conflict_alone(store, tmp_path):
    store.create_cases([record("ถนนพัง", external_id="g-0")])
    batch = [record("ไฟดับ", external_id="g-1"), record("อื่น", external_id="g-0"), record("ขยะ"),
             record("ไฟดับ", external_id="g-1")]
    out = store.create_cases_each(batch)
    assert isinstance(out[1], ConflictError)
    (first, created1), (third, created3), (again, created4) = out[0], out[2], out[3]
    assert created1 and created3 and not created4 and again["id"] == first["id"]
    for case in (first, third):  # what it returns is what a reader gets back
        assert case == store.get_case(case["id"])
    other = sqlite3.connect(tmp_path / "cases.db")  # committed: another connection sees them
    assert other.execute("SELECT count(*) FROM cases").fetchone()[0] == 3
    assert other.execute("SELECT count(*) FROM events WHERE kind = 'created'").fetchone()[0] == 3
    other.close()
