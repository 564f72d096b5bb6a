"""Issue 10 end to end against real servers (serve.py on loopback) and a real webhook receiver.

Tracking codes and the public view, agency keys, public vs internal notes, complainants' feedback,
signed webhooks through refused and hanging deliveries, escalation of overdue cases with deadlines
of seconds, ``python -m triage escalate-overdue``, the outbox across a restart, rate limits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import H_INTAKE, H_REVIEWER, KEYS, TEXTS, Server, free_port

from triage.outbox import SIGNATURE_HEADER, verify
from triage.routing import Directory
from triage.sla import escalation_target
from triage.testing import REPO

SECRET = "webhook-secret-for-tests-0001"
BANGRAK, DUSIT = "สำนักงานเขตบางรัก", "สำนักงานเขตดุสิต"
A_BANGRAK, A_DUSIT = "agency-bangrak-key-01", "agency-dusit-key-0002"
H_BANGRAK, H_DUSIT = {"X-API-Key": A_BANGRAK}, {"X-API-Key": A_DUSIT}
AGENCY_KEYS = f"{KEYS},{A_BANGRAK}:agency:{BANGRAK},{A_DUSIT}:agency:{DUSIT}"
CENTRAL = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"
PHONE = "081-234-5678"
WEBHOOK_KEYS = {"event_id", "case_id", "tracking_code", "status", "agency", "at", "public_note"}


class Receiver:
    """A webhook receiver on a loopback port that can accept (200), refuse (503) or hang, and records all."""

    def __init__(self, port: int | None = None) -> None:
        self.mode = "accept"
        self.refuse_next = 0
        self.attempts: list[dict[str, Any]] = []  # every POST: body, signature ok, answer
        self._release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    mode = "refuse" if outer.refuse_next > 0 else outer.mode
                    if outer.refuse_next > 0:
                        outer.refuse_next -= 1
                    outer.attempts.append({"body": body, "signed": verify(SECRET, body, self.headers.get(SIGNATURE_HEADER)),
                                           "answer": mode})
                if mode == "hang":
                    outer._release.wait(30)
                    return
                self.send_response(503 if mode == "refuse" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(a["body"]) for a in self.attempts if a["answer"] == "accept"]

    def for_case(self, case_id: int) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for event in self.accepted():
            if event["case_id"] == case_id:
                seen.setdefault(event["event_id"], event)  # duplicates dropped by event_id, as a receiver does
        return list(seen.values())

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path, receiver: Receiver) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("followup") / "data", small_model_dir, TRIAGE_API_KEYS=AGENCY_KEYS,
                 TRIAGE_WEBHOOK_URL=receiver.url, TRIAGE_WEBHOOK_SECRET=SECRET, TRIAGE_WEBHOOK_TIMEOUT="1",
                 TRIAGE_WEBHOOK_RETRY_SECONDS="0.2", TRIAGE_WEBHOOK_MAX_BACKOFF="0.5", TRIAGE_TRACK_BURST="100000")
    yield srv
    srv.stop()


def triage(srv: Server, text: str = TEXTS[1], **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{srv.url}/v1/triage", json={"text": text, **extra}, headers=H_INTAKE, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()


def move(srv: Server, case_id: int, headers: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/cases/{case_id}/status", json={"actor": "นายสมชาย เจ้าหน้าที่", **body},
                      headers=headers, timeout=30)


def track(srv: Server, code: str) -> httpx.Response:
    return httpx.get(f"{srv.url}/v1/track/{code}", timeout=30)


def test_tracking_codes_are_long_random_stable_and_in_batches(server):
    first = triage(server, TEXTS[0], external_id="line-track-1")
    again = triage(server, TEXTS[0], external_id="line-track-1")
    code = first["tracking_code"]
    assert len(code) >= 16 and code.isalnum() and again["tracking_code"] == code and again["created"] is False
    batch = httpx.post(f"{server.url}/v1/triage/batch", headers=H_INTAKE, timeout=60, json={"items": [
        {"text": TEXTS[2], "external_id": "line-track-2"}, {"text": TEXTS[3]}, {"text": TEXTS[0],
                                                                              "external_id": "line-track-1"}]}).json()
    codes = [r["tracking_code"] for r in batch["results"]]
    assert codes[2] == code and len(set(codes)) == 3 and all(len(c) >= 16 for c in codes)
    case = httpx.get(f"{server.url}/v1/cases/{first['case_id']}", headers=H_REVIEWER).json()
    assert case["tracking_code"] == code and case["deadline"] > case["created_at"]


def test_public_view_shows_only_what_staff_marked_public(server):
    text = f"นายสมชาย ใจดี โทร {PHONE} ถนนหน้าบ้านเป็นหลุมลึก"
    out = triage(server, text, district="บางรัก", reporter_contact="somchai@example.com")
    other = triage(server, TEXTS[4], district="บางรัก")
    r = move(server, out["case_id"], H_REVIEWER, status="assigned", note="ลับเฉพาะ: ผู้ร้องเป็นญาติผู้อำนวยการ",
             public_note="เจ้าหน้าที่รับเรื่องแล้ว จะลงพื้นที่ภายในสัปดาห์นี้")
    assert r.status_code == 200, r.text
    move(server, other["case_id"], H_REVIEWER, status="assigned", public_note="เรื่องของคนอื่น")
    view = track(server, out["tracking_code"])
    assert view.status_code == 200
    body = view.json()
    assert set(body) == {"status", "agency", "updated_at", "deadline", "steps"}
    assert body["status"] == "assigned" and body["deadline"]
    assert [s["status"] for s in body["steps"]] == ["new", "assigned"]
    assert all(set(s) == {"at", "status", "agency", "note"} for s in body["steps"])
    assert body["steps"][1]["note"] == "เจ้าหน้าที่รับเรื่องแล้ว จะลงพื้นที่ภายในสัปดาห์นี้"
    raw = view.text
    for secret in ("ลับเฉพาะ", "ญาติ", "สมชาย", PHONE, "somchai", "นายสมชาย เจ้าหน้าที่", "เรื่องของคนอื่น",
                   "ถนนหน้าบ้าน", str(other["tracking_code"])):
        assert secret not in raw, secret
    page = httpx.get(f"{server.url}/track/{out['tracking_code']}", timeout=30)
    assert page.status_code == 200 and "เจ้าหน้าที่รับเรื่องแล้ว" in page.text and "หน่วยงานรับเรื่องแล้ว" in page.text
    assert "ลับเฉพาะ" not in page.text and PHONE not in page.text and "นายสมชาย" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    for unknown in ("ABCDEFGHJKMNPQRSTUVW", "x", "' OR 1=1 --", "%00", "ก" * 20, "A" * 300):
        assert track(server, unknown).status_code == 404, unknown
    assert httpx.get(f"{server.url}/track/NOSUCHCODE1234567890", timeout=30).status_code == 404
    log = Path(server.log.name).read_text(encoding="utf-8")
    assert PHONE not in log and "สมชาย" not in log and "somchai" not in log


def test_agency_keys_see_and_move_only_their_own_cases(server):
    out = triage(server, TEXTS[2], district="บางรัก", reporter_contact=PHONE)
    case_id = out["case_id"]
    if httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_REVIEWER).json()["agency"] != BANGRAK:
        assert move(server, case_id, H_REVIEWER, status="forwarded", agency=BANGRAK).status_code == 200
    mine = httpx.get(f"{server.url}/v1/cases?limit=200", headers=H_BANGRAK).json()["items"]
    assert case_id in [c["id"] for c in mine] and {c["agency"] for c in mine} == {BANGRAK}
    assert case_id not in [c["id"] for c in httpx.get(f"{server.url}/v1/cases?limit=200", headers=H_DUSIT).json()["items"]]
    assert httpx.get(f"{server.url}/v1/cases?agency={DUSIT}", headers=H_BANGRAK).json()["items"] == []
    read = httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_BANGRAK)
    assert read.status_code == 200 and read.json()["reporter_contact"] is None
    assert httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_DUSIT).status_code == 404
    assert httpx.get(f"{server.url}/v1/cases/{case_id}/history", headers=H_DUSIT).status_code == 404
    assert move(server, case_id, H_DUSIT, status="assigned").status_code == 404
    # what an agency may not do
    assert httpx.post(f"{server.url}/v1/triage", json={"text": TEXTS[0]}, headers=H_BANGRAK).status_code == 403
    assert httpx.post(f"{server.url}/v1/cases/{case_id}/corrections", headers=H_BANGRAK,
                      json={"reviewer": "x", "reason": "y", "urgency": "low"}).status_code == 403
    assert move(server, case_id, H_BANGRAK, status="rejected").status_code == 403
    assert httpx.post(f"{server.url}/v1/admin/reload", headers=H_BANGRAK).status_code == 403
    assert httpx.get(f"{server.url}/review", headers=H_BANGRAK).status_code == 403
    assert httpx.get(f"{server.url}/v1/review/queue", headers=H_BANGRAK).status_code == 403
    # accept, in progress, forward (the deadline starts again), then the other agency resolves
    assert move(server, case_id, H_BANGRAK, status="assigned", note="ส่งทีมโยธา").status_code == 200
    before = move(server, case_id, H_BANGRAK, status="in_progress").json()
    time.sleep(0.05)
    forwarded = move(server, case_id, H_BANGRAK, status="forwarded", agency=DUSIT, note="อยู่ในเขตดุสิต",
                     public_note="ส่งต่อให้สำนักงานเขตดุสิต")
    assert forwarded.status_code == 200 and forwarded.json()["agency"] == DUSIT
    assert forwarded.json()["deadline"] > before["deadline"]
    assert httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_BANGRAK).status_code == 404
    assert move(server, case_id, H_BANGRAK, status="in_progress").status_code == 404
    assert move(server, case_id, H_DUSIT, status="assigned").status_code == 200
    done = move(server, case_id, H_DUSIT, status="resolved", public_note="ซ่อมถนนเรียบร้อยแล้ว")
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    view = track(server, out["tracking_code"]).json()
    assert [s["status"] for s in view["steps"]][-3:] == ["forwarded", "assigned", "resolved"]
    assert view["steps"][-1]["note"] == "ซ่อมถนนเรียบร้อยแล้ว" and "ส่งทีมโยธา" not in json.dumps(view)


def test_feedback_after_resolution_and_reopen(server):
    out = triage(server, TEXTS[6], district="บางรัก")
    code, case_id = out["tracking_code"], out["case_id"]
    fb = f"{server.url}/v1/track/{code}/feedback"
    assert httpx.post(fb, json={"stars": 5}).status_code == 409  # not resolved yet
    for step in ("assigned", "resolved"):
        assert move(server, case_id, H_REVIEWER, status=step).status_code == 200
    for bad in ({"stars": 0}, {"stars": 6}, {"stars": "x"}, {}, {"stars": 3, "comment": "x" * 3000},
                {"stars": 3, "extra": 1}):
        r = httpx.post(fb, json=bad)
        assert r.status_code == 422 and "error" in r.json(), bad
    assert httpx.post(fb, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert httpx.post(f"{server.url}/v1/track/NOSUCHCODE1234567890/feedback", json={"stars": 3}).status_code == 404
    r = httpx.post(fb, json={"stars": 2, "comment": f"ยังไม่ซ่อม โทร {PHONE}", "reopen": True})
    assert r.status_code == 200 and r.json()["status"] == "assigned"
    case = httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_REVIEWER).json()
    assert case["status"] == "assigned" and case["agency"] == r.json()["agency"]
    last = httpx.get(f"{server.url}/v1/cases/{case_id}/history", headers=H_REVIEWER).json()["events"][-1]
    assert last["from_status"] == "resolved" and last["actor"] == "complainant" and last["reason"] == "reopened"
    assert httpx.post(fb, json={"stars": 4}).status_code == 409  # reopened: nothing to rate now
    assert move(server, case_id, H_REVIEWER, status="resolved").status_code == 200
    assert httpx.post(fb, json={"stars": 4, "comment": "เรียบร้อย"}).status_code == 200
    assert httpx.post(fb, json={"stars": 1}).status_code == 409  # once per resolution
    assert PHONE not in Path(server.log.name).read_text(encoding="utf-8")


def check_events(events: list[dict[str, Any]]) -> None:
    for e in events:
        assert set(e) == WEBHOOK_KEYS


def test_every_status_change_is_posted_signed(server, receiver):
    out = triage(server, TEXTS[5], district="บางรัก")
    case_id = out["case_id"]
    move(server, case_id, H_REVIEWER, status="assigned", note="ภายในเท่านั้น", public_note="รับเรื่องแล้ว")
    move(server, case_id, H_REVIEWER, status="in_progress")
    move(server, case_id, H_REVIEWER, status="resolved", public_note="เสร็จแล้ว")
    events = wait_for(lambda: len(receiver.for_case(case_id)) == 3 and receiver.for_case(case_id), 20, "3 events")
    check_events(events)
    assert [e["status"] for e in events] == ["assigned", "in_progress", "resolved"]
    assert [e["public_note"] for e in events] == ["รับเรื่องแล้ว", None, "เสร็จแล้ว"]
    assert {e["tracking_code"] for e in events} == {out["tracking_code"]}
    mine = [a for a in receiver.attempts if json.loads(a["body"])["case_id"] == case_id]
    assert all(a["signed"] for a in mine)
    assert not any("ภายในเท่านั้น" in a["body"].decode() for a in mine)
    forged = SECRET.replace("0", "1")
    assert not verify(forged, mine[0]["body"], "sha256=" + "0" * 64)


def quiet(receiver: Receiver, seconds: float = 1.0) -> None:
    """Wait until the receiver has had no delivery for ``seconds`` (earlier tests' events are all in)."""
    seen = -1
    while seen != len(receiver.attempts):
        seen = len(receiver.attempts)
        time.sleep(seconds)


def test_refused_deliveries_are_retried_and_repeats_keep_their_event_id(server, receiver):
    out = triage(server, TEXTS[7], district="บางรัก")
    case_id = out["case_id"]
    quiet(receiver)
    receiver.refuse_next = 4
    move(server, case_id, H_REVIEWER, status="assigned")
    move(server, case_id, H_REVIEWER, status="in_progress")
    events = wait_for(lambda: len(receiver.for_case(case_id)) == 2 and receiver.for_case(case_id), 30,
                      "delivery after refusals")
    assert [e["status"] for e in events] == ["assigned", "in_progress"]  # in order, after the refusals
    tries = [json.loads(a["body"])["event_id"] for a in receiver.attempts
             if json.loads(a["body"])["case_id"] == case_id]
    assert tries.count(events[0]["event_id"]) >= 2  # refused, then sent again with the same event_id
    assert len(set(tries)) == 2


def test_a_hanging_receiver_never_blocks_a_request(server, receiver):
    receiver.mode = "hang"
    try:
        out = triage(server, TEXTS[3], district="บางรัก")
        case_id = out["case_id"]
        started = time.monotonic()
        for step in ("assigned", "in_progress", "resolved"):
            assert move(server, case_id, H_REVIEWER, status=step).status_code == 200
        assert time.monotonic() - started < 3.0
        wait_for(lambda: any(json.loads(a["body"])["case_id"] == case_id for a in receiver.attempts), 10, "a try")
        started = time.monotonic()
        assert httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_REVIEWER, timeout=10).status_code == 200
        assert track(server, out["tracking_code"]).status_code == 200
        assert time.monotonic() - started < 2.0
    finally:
        receiver.mode = "accept"
        receiver._release.set()
    events = wait_for(lambda: len(receiver.for_case(case_id)) == 3 and receiver.for_case(case_id), 30,
                      "delivery after the hang")
    assert [e["status"] for e in events] == ["assigned", "in_progress", "resolved"]
    # the receiver got the first event while hanging and again after: a duplicate it drops by event_id
    tries = [json.loads(a["body"])["event_id"] for a in receiver.attempts if json.loads(a["body"])["case_id"] == case_id]
    assert tries.count(events[0]["event_id"]) >= 2


# -- deadlines of seconds: the service escalates by itself ---------------------------------------

SECONDS_SLA = "high=0.0006,medium=0.0006,low=0.0006"  # 2.16 s


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fast(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         small_model_dir: Path) -> Iterator[tuple[Server, Receiver]]:
    database = {}
    if request.param == "postgresql":  # the deadline check and the outbox on the PostgreSQL store too
        cluster, template = request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template")
        database["TRIAGE_DATABASE_URL"] = cluster.create_database("followup_fast", template=template)
    hook = Receiver()
    srv = Server(tmp_path_factory.mktemp("sla") / "data", small_model_dir, TRIAGE_SLA_HOURS=SECONDS_SLA,
                 TRIAGE_SLA_CHECK_SECONDS="0.3", TRIAGE_WEBHOOK_URL=hook.url, TRIAGE_WEBHOOK_SECRET=SECRET,
                 TRIAGE_WEBHOOK_RETRY_SECONDS="0.2", **database)
    yield srv, hook
    srv.stop()
    hook.stop()


def test_overdue_cases_climb_one_level_at_a_time_to_the_central_level(fast):
    srv, hook = fast
    out = triage(srv, TEXTS[1], district="บางเขน")
    case_id = out["case_id"]
    directory = Directory.load()
    start = httpx.get(f"{srv.url}/v1/cases/{case_id}", headers=H_REVIEWER).json()
    expected, path = [], list(start["agency_path"])
    while (target := escalation_target(directory, path[-1], path, CENTRAL)) is not None:
        expected.append(target)
        path.append(target)
    assert expected[-1] == CENTRAL

    def escalations() -> list[dict[str, Any]]:
        events = httpx.get(f"{srv.url}/v1/cases/{case_id}/history", headers=H_REVIEWER).json()["events"]
        return [e for e in events if e["to_status"] == "escalated"]

    wait_for(lambda: len(escalations()) == len(expected), 15 + 5 * len(expected), "escalation to the top")
    time.sleep(3.0)  # past another deadline: at the central level it stays
    steps = escalations()
    assert [e["agency"] for e in steps] == expected
    assert all(e["actor"] == "system" and e["reason"] == "overdue" for e in steps)
    case = httpx.get(f"{srv.url}/v1/cases/{case_id}", headers=H_REVIEWER).json()
    assert case["agency"] == CENTRAL and case["status"] == "escalated" and case["overdue"] is True
    assert len(set(case["agency_path"])) == len(case["agency_path"])
    view = httpx.get(f"{srv.url}/v1/track/{out['tracking_code']}").json()
    assert [s["agency"] for s in view["steps"] if s["status"] == "escalated"] == expected
    assert all(s["note"] is None for s in view["steps"])  # the system's internal note stays internal
    events = wait_for(lambda: len(hook.for_case(case_id)) == len(expected) and hook.for_case(case_id), 20, "webhooks")
    check_events(events)
    assert [(e["status"], e["agency"]) for e in events] == [("escalated", a) for a in expected]


def test_a_resolved_case_is_never_escalated(fast):
    srv, _ = fast
    case_id = triage(srv, TEXTS[2], district="บางรัก")["case_id"]
    for step in ("assigned", "resolved"):
        assert move(srv, case_id, H_REVIEWER, status=step).status_code == 200
    time.sleep(3.0)  # past its deadline: resolved, it stays where it is
    events = httpx.get(f"{srv.url}/v1/cases/{case_id}/history", headers=H_REVIEWER).json()["events"]
    assert events[-1]["to_status"] == "resolved" and events[-1]["actor"] != "system"


# -- a scheduler's pass, and the outbox across a restart --------------------------------------------

def test_scheduler_pass_and_outbox_survive_a_restart(tmp_path, small_model_dir, db_url):
    hook_port = free_port()  # nothing listens there yet: every delivery is refused
    data = tmp_path / "data"
    env = {"TRIAGE_DATABASE_URL": db_url,
           "TRIAGE_SLA_HOURS": "high=0.0003,medium=0.0003,low=0.0003", "TRIAGE_SLA_CHECK_SECONDS": "3600",
           "TRIAGE_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook", "TRIAGE_WEBHOOK_SECRET": SECRET,
           "TRIAGE_WEBHOOK_RETRY_SECONDS": "0.2", "TRIAGE_WEBHOOK_MAX_BACKOFF": "0.5",
           "TRIAGE_TRACK_RATE_PER_MINUTE": "6", "TRIAGE_TRACK_BURST": "3"}
    srv = Server(data, small_model_dir, **env)
    try:
        out = triage(srv, TEXTS[0], district="บางรัก")
        case_id = out["case_id"]
        assert move(srv, case_id, H_REVIEWER, status="assigned", public_note="รับแล้ว").status_code == 200
        time.sleep(1.5)  # overdue, but the service checks only hourly here
        history = httpx.get(f"{srv.url}/v1/cases/{case_id}/history", headers=H_REVIEWER).json()["events"]
        assert [e["to_status"] for e in history] == ["new", "assigned"]
        run = subprocess.run([sys.executable, "-m", "triage", "escalate-overdue", "--no-deliver"], cwd=REPO,
                             env={**os.environ, "TRIAGE_DATA_DIR": str(data), "TRIAGE_API_KEYS": KEYS, **env},
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert f"case {case_id}:" in run.stdout and "escalated 1 overdue case" in run.stderr
        history = httpx.get(f"{srv.url}/v1/cases/{case_id}/history", headers=H_REVIEWER).json()["events"]
        assert history[-1]["to_status"] == "escalated" and history[-1]["actor"] == "system"
        # rate limit: 3 at once, then 429 with a Retry-After
        answers = [track(srv, out["tracking_code"]).status_code for _ in range(4)]
        assert answers[:3] == [200, 200, 200] and answers[3] == 429
        limited = track(srv, out["tracking_code"])
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert httpx.get(f"{srv.url}/track/{out['tracking_code']}").status_code == 429
    finally:
        srv.stop()
    hook = Receiver(hook_port)
    srv = Server(data, small_model_dir, **env)
    try:
        events = wait_for(lambda: len(hook.for_case(case_id)) == 2 and hook.for_case(case_id), 30,
                          "delivery after the restart")
        check_events(events)
        assert [e["status"] for e in events] == ["assigned", "escalated"] and events[0]["public_note"] == "รับแล้ว"
        assert all(a["signed"] for a in hook.attempts)
    finally:
        srv.stop()
        hook.stop()


# -- settings that must refuse to start ------------------------------------------------------------

@pytest.mark.parametrize(("extra", "expected"), [
    ({"TRIAGE_API_KEYS": f"{KEYS},agency-key-000001:agency:สำนักงานเขตแอตแลนติส"}, "agencies.toml"),
    ({"TRIAGE_API_KEYS": f"{KEYS},agency-key-000001:agency:เขตบางรัก"}, "สำนักงานเขตบางรัก"),
    ({"TRIAGE_WEBHOOK_URL": "http://127.0.0.1:9/hook"}, "TRIAGE_WEBHOOK_SECRET"),
    ({"TRIAGE_WEBHOOK_URL": "ftp://127.0.0.1/x", "TRIAGE_WEBHOOK_SECRET": SECRET}, "http://"),
    ({"TRIAGE_SLA_HOURS": "high=soon"}, "urgency=hours"),
])
def test_bad_settings_refuse_to_start(tmp_path, small_model_dir, extra, expected):
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path), "TRIAGE_MODELS_DIR": str(small_model_dir),
           "TRIAGE_API_KEYS": KEYS, **extra}
    r = subprocess.run([sys.executable, str(REPO / "serve.py"), "--port", str(free_port())], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0 and expected in r.stderr, r.stderr
