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
