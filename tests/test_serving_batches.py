"""Micro-batched triage over real HTTP (serve.py on loopback): answers, UTF-8 JSON, back-pressure, kill -9."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import H_INTAKE, H_REVIEWER, TEXTS, Server

from triage.schemas import TriageOut

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("batches") / "data", small_model_dir, TRIAGE_BATCH_WAIT_MS="5")
    yield srv
    srv.stop()


def post_all(url: str, bodies: list[dict], threads: int = 8) -> list[httpx.Response]:
    out: list[httpx.Response | None] = [None] * len(bodies)

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(k, len(bodies), threads):
                out[i] = c.post("/v1/triage", json=bodies[i], headers=H_INTAKE)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return [r for r in out if r is not None]


def test_concurrent_requests_each_get_their_own_complaints_triage(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        alone = {t: c.post("/v1/triage", json={"text": t, "district": "บางรัก"}, headers=H_INTAKE).json() for t in TEXTS}
    bodies = [{"text": TEXTS[i % len(TEXTS)], "district": "บางรัก", "external_id": f"c-{i}"} for i in range(64)]
    responses = post_all(server.url, bodies)
    assert [r.status_code for r in responses] == [201] * 64
    ids = set()
    for body, r in zip(bodies, responses):
        got, solo = r.json(), alone[body["text"]]
        assert got["external_id"] == body["external_id"]
        for key in ("topics", "topic_scores", "urgency", "urgency_scores", "agencies", "explanation"):
            assert got[key] == solo[key], key
        TriageOut.model_validate(got)  # the hot path's JSON is the documented response
        ids.add(got["case_id"])
    assert len(ids) == 64
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for body, r in list(zip(bodies, responses))[::9]:
            case = c.get(f"/v1/cases/{r.json()['case_id']}", headers=H_REVIEWER).json()
            assert case["text"] == body["text"] and case["external_id"] == body["external_id"]


def test_a_retry_in_the_same_batch_makes_one_case_and_a_conflict_fails_alone(server):
    text = "ถนนทรุดเป็นหลุมลึก หน้าปากซอย 12"
    bodies = [{"text": text, "external_id": "same-1"}] * 6 + [{"text": "ข้อความอื่น", "external_id": "same-1"}] + \
        [{"text": TEXTS[0], "external_id": "other-1"}]
    responses = post_all(server.url, bodies, threads=8)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 201, 409} and codes[-1] == 201, codes
    ok = [r.json() for r in responses[:7] if r.status_code in (200, 201)]
    assert len({x["case_id"] for x in ok}) == 1  # whichever text came first made the one case
    assert sum(x["created"] for x in ok) == 1
    assert len(ok) + codes[:7].count(409) == 7


def test_json_is_utf8_not_escaped(server):
    r = httpx.post(f"{server.url}/v1/triage", json={"text": TEXTS[0], "district": "บางรัก"}, headers=H_INTAKE, timeout=60)
    assert r.status_code == 201 and r.headers["content-type"].startswith("application/json")
    raw = r.content
    assert b"\\u0" not in raw
    assert "บางรัก".encode() in raw or any(t.encode() in raw for t in r.json()["topics"])
    assert r.json()["topics"][0].encode("utf-8") in raw
    err = httpx.post(f"{server.url}/v1/triage", json={"text": "   "}, headers=H_INTAKE, timeout=60)
    assert err.status_code == 422 and b"\\u" not in err.content


def test_a_full_queue_answers_503_with_retry_after_never_500(tmp_path, small_model_dir):
    srv = Server(tmp_path / "data", small_model_dir, TRIAGE_BATCH_QUEUE="1", TRIAGE_BATCH_MAX="1")
    try:
        long = " ".join(TEXTS) * 20
        responses = post_all(srv.url, [{"text": long}] * 48, threads=16)
        codes = [r.status_code for r in responses]
        assert set(codes) <= {201, 503} and 503 in codes and 201 in codes, codes
        refused = next(r for r in responses if r.status_code == 503)
        assert int(refused.headers["Retry-After"]) >= 1 and "TRIAGE_BATCH_QUEUE" in refused.json()["error"]
    finally:
        srv.stop()


def test_kill_9_under_load_loses_no_acknowledged_case(tmp_path, small_model_dir):
    data = tmp_path / "data"
    srv = Server(data, small_model_dir)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                ext = f"k{k}-{i}"
                i += 1
                try:
                    r = c.post("/v1/triage", json={"text": TEXTS[(k + i) % len(TEXTS)], "external_id": ext},
                               headers=H_INTAKE)
                except httpx.HTTPError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 201:
                    with lock:
                        acked[ext] = r.json()["case_id"]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(30)
    stop.set()
    for t in threads:
        t.join(60)
    srv.stop()
    assert len(acked) >= 150
    db = sqlite3.connect(data / "triage.db")
    stored = dict(db.execute("SELECT external_id, id FROM cases"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    missing = {ext: cid for ext, cid in acked.items() if stored.get(ext) != cid}
    assert not missing, f"{len(missing)} acknowledged cases are not in the database: {list(missing)[:5]}"
    # and the service starts again on that database, with the cases there
    again = Server(data, small_model_dir)
    try:
        ext, case_id = next(iter(acked.items()))
        case = httpx.get(f"{again.url}/v1/cases/{case_id}", headers=H_REVIEWER, timeout=30).json()
        assert case["external_id"] == ext
    finally:
        again.stop()
