"""Two real serve.py replicas (each with its own data dir, as on two machines) on one PostgreSQL database:
retries of one external_id to both, a case moved on one and read on the other, a reload announced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import H_ADMIN, H_INTAKE, H_REVIEWER, TEXTS, Server
from test_store_replicas import race


@pytest.fixture()
def two_replicas(tmp_path: Path, small_model_dir: Path, pg_url: str) -> Iterator[tuple[Server, Server]]:
    env = {"TRIAGE_DATABASE_URL": pg_url, "TRIAGE_DATABASE_POOL_SIZE": "4"}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = Server(tmp_path / "a" / "data", small_model_dir, **env)
    try:
        b = Server(tmp_path / "b" / "data", small_model_dir, **env)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def test_two_replicas_share_cases_and_follow_each_others_reloads(two_replicas):
    a, b = two_replicas
    clients = [httpx.Client(base_url=s.url, timeout=60) for s in (a, b)]
    try:
        for round_ in range(4):  # the same request retried to both replicas at once, four times each
            body = {"text": TEXTS[round_], "external_id": f"intake-{round_}"}
            answers = race(8, lambda i, body=body: clients[i % 2].post("/v1/triage", json=body, headers=H_INTAKE))
            assert sorted(r.status_code for r in answers) == [200] * 7 + [201]
            assert len({r.json()["case_id"] for r in answers}) == 1
        listed = clients[1].get("/v1/cases", headers=H_ADMIN).json()["items"]
        assert len(listed) == 4 and {c["text"] for c in listed} == {None}
        case_id = listed[0]["id"]
        moved = clients[0].post(f"/v1/cases/{case_id}/status", json={"actor": "desk a", "status": "assigned"},
                                headers=H_REVIEWER)
        assert moved.status_code == 200
        assert clients[1].get(f"/v1/cases/{case_id}", headers=H_REVIEWER).json()["status"] == "assigned"
        again = clients[1].post(f"/v1/cases/{case_id}/status", json={"actor": "desk b", "status": "assigned"},
                                headers=H_REVIEWER)
        assert again.status_code == 409  # the workflow is the database's, not one replica's

        before = clients[1].get("/v1/model", headers=H_ADMIN).json()["loaded_at"]
        reloaded = clients[0].post("/v1/admin/reload", headers=H_ADMIN)
        assert reloaded.status_code == 200
        deadline = time.monotonic() + 60
        after = before
        while after == before and time.monotonic() < deadline:
            time.sleep(0.5)
            after = clients[1].get("/v1/model", headers=H_ADMIN).json()["loaded_at"]
        assert after != before, "replica b did not follow the reload announced by replica a"
    finally:
        for c in clients:
            c.close()


def test_two_replicas_escalate_each_overdue_case_once_and_post_each_event_once(tmp_path, small_model_dir, pg_url):
    from collections import Counter

    from test_followup_server import CENTRAL, SECRET, Receiver, wait_for

    hook = Receiver()
    env = {"TRIAGE_DATABASE_URL": pg_url, "TRIAGE_SLA_HOURS": "high=0.0006,medium=0.0006,low=0.0006",  # 2.16 s
           "TRIAGE_SLA_CHECK_SECONDS": "0.2", "TRIAGE_WEBHOOK_URL": hook.url, "TRIAGE_WEBHOOK_SECRET": SECRET,
           "TRIAGE_WEBHOOK_RETRY_SECONDS": "0.2"}
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(Server(tmp_path / name / "data", small_model_dir, **env))
        ids = []
        for k, district in enumerate(("บางเขน", "บางรัก", "ดุสิต")):
            r = httpx.post(f"{servers[k % 2].url}/v1/triage", json={"text": TEXTS[k], "district": district},
                           headers=H_INTAKE, timeout=60)
            assert r.status_code == 201
            ids.append(r.json()["case_id"])

        def case(i: int) -> dict:
            return httpx.get(f"{servers[i % 2].url}/v1/cases/{i}", headers=H_REVIEWER, timeout=60).json()

        wait_for(lambda: all(case(i)["agency"] == CENTRAL for i in ids), 90, "every case escalated to the top")
        time.sleep(2.0)  # the last events delivered; more passes of both replicas over the same cases
        for i in ids:
            events = httpx.get(f"{servers[0].url}/v1/cases/{i}/history", headers=H_REVIEWER, timeout=60).json()["events"]
            steps = [e for e in events if e["to_status"] == "escalated"]
            assert steps and all(e["actor"] == "system" and e["reason"] == "overdue" for e in steps)
            assert len({e["agency"] for e in steps}) == len(steps)  # no level twice
            assert [e["agency"] for e in steps][-1] == CENTRAL
        posted = Counter(e["event_id"] for e in hook.accepted())
        escalations = sum(len([e for e in httpx.get(f"{servers[1].url}/v1/cases/{i}/history", headers=H_REVIEWER,
                                                     timeout=60).json()["events"] if e["to_status"] == "escalated"])
                          for i in ids)
        assert len(posted) == escalations and set(posted.values()) == {1}  # each event posted once, by one replica
    finally:
        for s in servers:
            s.stop()
        hook.stop()
