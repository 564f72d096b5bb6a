"""A real uvicorn (serve.py) on a loopback port: concurrent writes, SIGHUP reload, SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import H_ADMIN, H_INTAKE, H_REVIEWER, KEYS, TEXTS, Server, free_port

from triage.testing import REPO


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path) -> Iterator[Server]:
    # debug level: every log line the service can write goes to srv.log, which a test scans
    srv = Server(tmp_path_factory.mktemp("srv") / "data", small_model_dir, TRIAGE_LOG_LEVEL="debug")
    yield srv
    srv.stop()


def test_the_real_server_logs_no_raw_text_when_cases_are_triaged_opened_and_corrected(server):
    secret = "นายสมชาย ใจดี บ้านเลขที่ 99/1 โทร 081-234-5678 ไฟฟ้าดับทั้งซอยมืดสนิท"
    fragments = ("สมชาย", "99/1", "081-234-5678", "0812345678", "ไฟฟ้าดับทั้งซอย", "somchai")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/v1/triage", json={"text": secret, "reporter_contact": "somchai@example.com",
                                       "external_id": "log-scan-1"}, headers=H_INTAKE)
        assert r.status_code == 201
        case_id = r.json()["case_id"]
        page = c.get(f"/review/cases/{case_id}", headers=H_REVIEWER)  # a reviewer opens the case
        assert page.status_code == 200 and "สมชาย" in page.text  # the page shows the raw text...
        version = c.get(f"/v1/cases/{case_id}", headers=H_REVIEWER).json()["updated_at"]
        saved = c.post(f"/review/cases/{case_id}/correct", headers=H_REVIEWER, follow_redirects=False,
                       data={"topics": r.json()["topics"], "urgency": "low", "reason": "ทดสอบ", "version": version})
        assert saved.status_code == 303
        c.get(f"/v1/cases/{case_id}", headers=H_ADMIN)
        c.get("/v1/cases", headers=H_ADMIN)
        c.post("/v1/triage", json={"text": secret + "ก" * 20_000}, headers=H_INTAKE)  # refused: too long
    deadline = time.monotonic() + 10
    log = ""
    while time.monotonic() < deadline and f"case {case_id} opened for review" not in log:
        time.sleep(0.2)
        log = Path(server.log.name).read_text(encoding="utf-8")
    # ...and the log of the serve.py process says what happened, without it
    assert f"case {case_id} created" in log and f"case {case_id} opened for review" in log
    assert f"case {case_id} corrected" in log
    leaked = [f for f in fragments if f in log]
    assert not leaked, f"raw complaint text or contact in the server log: {leaked}"


def test_serve_without_a_model_says_how_to_train(tmp_path):
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path), "TRIAGE_MODELS_DIR": str(tmp_path / "none"),
           "TRIAGE_API_KEYS": KEYS}
    r = subprocess.run([sys.executable, str(REPO / "serve.py"), "--port", str(free_port())], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0 and "train.py --config configs/traffy.toml" in r.stderr


def test_serve_without_keys_refuses_unless_dev(tmp_path, small_model_dir):
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path), "TRIAGE_MODELS_DIR": str(small_model_dir),
           "TRIAGE_API_KEYS": ""}
    r = subprocess.run([sys.executable, str(REPO / "serve.py"), "--port", str(free_port())], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0 and "TRIAGE_DEV_MODE" in r.stderr


def test_concurrent_triage_and_corrections_lose_nothing(server):
    errors: list[str] = []
    made: dict[str, int] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(15):
                ext = f"w{n}-{i}"
                r = c.post("/v1/triage", json={"text": TEXTS[(n + i) % len(TEXTS)], "external_id": ext,
                                               "district": "บางรัก"}, headers=H_INTAKE)
                if r.status_code != 201:
                    errors.append(f"triage {r.status_code} {r.text}")
                    continue
                case_id = r.json()["case_id"]
                if i % 2 == 0:
                    r = c.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER,
                               json={"reviewer": f"r{n}", "reason": "x", "urgency": "low"})
                    if r.status_code != 200:
                        errors.append(f"correction {r.status_code} {r.text}")
                with lock:
                    made[ext] = case_id

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == 90 and len(set(made.values())) == 90
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for ext, case_id in list(made.items())[::7]:
            case = c.get(f"/v1/cases/{case_id}", headers=H_REVIEWER).json()
            assert case["external_id"] == ext
            assert case["corrected"] == (int(ext.split("-")[1]) % 2 == 0)


def test_concurrent_retries_of_one_external_id_make_one_case(server):
    barrier = threading.Barrier(8)
    answers: list[tuple[int, int]] = []

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            barrier.wait()
            r = c.post("/v1/triage", json={"text": TEXTS[3], "external_id": "dup-1"}, headers=H_INTAKE)
            answers.append((r.status_code, r.json()["case_id"]))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({case_id for _, case_id in answers}) == 1 and len(answers) == 8
    assert sorted(code for code, _ in answers) == [200] * 7 + [201]


def test_sighup_and_reload_swap_the_model_without_failing_a_request(server):
    failures: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/triage", json={"text": TEXTS[0]}, headers=H_INTAKE)
                if r.status_code != 201:
                    failures.append(r.status_code)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            before = c.get("/v1/model", headers=H_ADMIN).json()["loaded_at"]
            server.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while c.get("/v1/model", headers=H_ADMIN).json()["loaded_at"] == before:
                assert time.monotonic() < deadline, "SIGHUP did not reload the model"
                time.sleep(0.2)
            assert c.post("/v1/admin/reload", headers=H_ADMIN).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert server.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_mid_write_leaves_a_consistent_database(tmp_path, small_model_dir, workers):
    """kill -9 of serve.py under load (with two workers, they end with it: ``triage.app.die_with_parent``):
    every acknowledged case is in the database, which is consistent."""
    data = tmp_path / "data"
    srv = Server(data, small_model_dir, workers=workers)
    acknowledged: list[int] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 3 == 0:
                        r = c.post("/v1/triage/batch", headers=H_INTAKE,
                                   json={"items": [{"text": t, "district": "บางรัก"} for t in TEXTS]})
                        ids = [x["case_id"] for x in r.json()["results"]] if r.status_code == 200 else []
                    else:
                        r = c.post("/v1/triage", json={"text": TEXTS[i % len(TEXTS)]}, headers=H_INTAKE)
                        ids = [r.json()["case_id"]] if r.status_code == 201 else []
                        if ids:
                            c.post(f"/v1/cases/{ids[0]}/corrections", headers=H_REVIEWER,
                                   json={"reviewer": "r", "reason": "x", "urgency": "high"})
                            c.post(f"/v1/cases/{ids[0]}/status", headers=H_REVIEWER,
                                   json={"actor": "s", "status": "assigned"})
                    acknowledged.extend(ids)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    srv.log.close()
    assert len(acknowledged) >= 60

    db = sqlite3.connect(data / "triage.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {r[0] for r in db.execute("SELECT id FROM cases")}
    assert set(acknowledged) <= stored  # every answered write was committed
    for case_id, prediction, topics, agencies, status in db.execute(
            "SELECT id, prediction, topics, agencies, status FROM cases"):
        assert json.loads(prediction)["topics"] and json.loads(topics) and json.loads(agencies)
        kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE case_id = ? ORDER BY id", (case_id,))]
        assert kinds[0] == "created"
        assert (status == "assigned") == ("status" in kinds)
    n_corr = db.execute("SELECT count(*) FROM corrections").fetchone()[0]
    n_corr_events = db.execute("SELECT count(*) FROM events WHERE kind = 'correction'").fetchone()[0]
    assert n_corr == n_corr_events
    orphans = db.execute("SELECT count(*) FROM events WHERE case_id NOT IN (SELECT id FROM cases)").fetchone()[0]
    assert orphans == 0


def test_two_workers_follow_a_reload_and_sighup_restarts_them_without_losing_a_request(tmp_path, small_model_dir):
    """Reload in one worker is followed by the other; SIGHUP replaces both, one at a time.

    A retiring worker closes its idle keep-alive connections, so a client may see a reset on a
    reused connection: it retries, which is safe because it sends an external_id. Nothing may
    fail after that one retry, and every complaint must be stored exactly once.
    """
    srv = Server(tmp_path / "data", small_model_dir, workers=2)
    failures: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def call(c: httpx.Client, method: str, url: str, **kw) -> httpx.Response:
        try:
            return c.request(method, url, **kw)
        except httpx.TransportError:
            return c.request(method, url, **kw)

    def traffic(n: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            i = 0
            while not stop.is_set():
                i += 1
                ext = f"t{n}-{i}"
                try:
                    r = call(c, "POST", "/v1/triage", json={"text": TEXTS[1], "external_id": ext}, headers=H_INTAKE)
                    if r.status_code not in (200, 201):
                        failures.append(str(r.status_code))
                    sent.append(ext)
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)

    def loaded(c: httpx.Client) -> list[str]:
        return [call(c, "GET", "/v1/model", headers=H_ADMIN).json()["loaded_at"] for _ in range(20)]

    def each_connection_new(n: int = 12) -> set[str]:
        """``loaded_at`` over ``n`` separate connections: the two workers each answer some of them."""
        seen = set()
        for _ in range(n):
            with httpx.Client(base_url=srv.url, timeout=60, headers={"Connection": "close"}) as fresh:
                seen.add(call(fresh, "GET", "/v1/model", headers=H_ADMIN).json()["loaded_at"])
        return seen

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(2)]
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            deadline = time.monotonic() + 60
            while len(each_connection_new()) < 2:  # both workers are reachable, each with its own load time
                assert time.monotonic() < deadline, "separate connections never reached the second worker"
            before = c.post("/v1/admin/reload", headers=H_ADMIN).json()["loaded_at"]
            # the worker that reloaded answers `before`; the other must follow with a load time of its own
            deadline = time.monotonic() + 60
            followed: set[str] = set()
            while len(followed) < 2:
                assert time.monotonic() < deadline, f"the other worker did not follow the reload: {followed}"
                seen = each_connection_new()
                followed |= {s for s in seen if s >= before}
                time.sleep(0.3)
            assert before in followed
            for t in threads:
                t.start()
            srv.proc.send_signal(signal.SIGHUP)  # uvicorn replaces the workers one at a time
            deadline = time.monotonic() + 120
            while not all(s > before for s in loaded(c)):
                assert time.monotonic() < deadline, "SIGHUP did not replace the workers"
                time.sleep(0.5)
            time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join()
        srv.stop()
    assert failures == []
    db = sqlite3.connect(tmp_path / "data" / "triage.db")
    stored = [e for (e,) in db.execute("SELECT external_id FROM cases WHERE external_id IS NOT NULL")]
    assert len(stored) == len(set(stored)) and set(sent) <= set(stored)
