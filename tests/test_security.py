"""Issue 13, the outside security review: each finding through the real app (TestClient, real SQLite).

The findings that live in the HTTP server itself (header limits) and the ones best seen from
outside (server log lines, file modes of a served data dir) are also checked against a real
``serve.py`` in test_security_server.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat
from pathlib import Path

import pytest
from api_helpers import (
    ADMIN,
    H_ADMIN,
    H_INTAKE,
    H_REVIEWER,
    INTAKE,
    REVIEWER,
    TEXTS,
    settings_for,
)
from fastapi.testclient import TestClient

from triage.app import create_app
from triage.config import parse_api_keys, parse_key_entries
from triage.review import COOKIE
from triage.security import has_control, log_safe

NAMED = "สายไฟหน้าบ้านนายสมชาย ใจดี ขาดห้อยลงมา อันตรายมาก โทร 081-234-5678"
NAME_PARTS = ("สมชาย", "ใจดี")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, key: str = REVIEWER, name: str = "สมศรี ตรวจดี"):
    page = client.get("/review/login")
    return client.post("/review/login", data={"csrf": csrf_of(page.text), "key": key, "name": name,
                                              "next": "/review"}, follow_redirects=False)


def cookie_data(value: str) -> dict:
    body = value.rpartition(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.fixture()
def client(tmp_path: Path, small_model_dir: Path):
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, review_threshold=1.0)),
                    raise_server_exceptions=False) as c:
        for text in TEXTS[:3]:
            assert c.post("/v1/triage", json={"text": text}, headers=H_INTAKE).status_code == 201
        yield c


# -- 1. logout ends the session on the server ------------------------------------------------------

def test_logout_revokes_the_session_so_a_saved_cookie_no_longer_works(client):
    assert login(client).status_code == 303
    saved = client.cookies[COOKIE]
    page = client.get("/review")
    assert page.status_code == 200
    r = client.post("/review/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and COOKIE not in client.cookies
    client.cookies.set(COOKIE, saved, path="/review")  # the cookie a thief copied before the logout
    r = client.get("/review", follow_redirects=False)
    assert r.status_code == 303 and "/review/login" in r.headers["location"]
    assert client.post("/review/cases/1/accept", data={"csrf": "x"}, follow_redirects=False).status_code == 303
    # a new login works again, and other sessions of the same key are not affected
    assert login(client).status_code == 303 and client.get("/review").status_code == 200


# -- 2. names do not leak through cues and explanations -------------------------------------------

def test_names_are_masked_in_cues_explanations_and_the_queue_page(client):
    out = client.post("/v1/triage", json={"text": NAMED}, headers=H_INTAKE).json()
    shown = [*out["urgency_cues"], *(t["token"] for t in out["explanation"])]
    assert out["urgency_cues"], "the wire-down cue should match"
    for part in NAME_PARTS:
        assert not any(part in s for s in shown), (part, shown)
    assert not {"สม", "ชาย", "สม ชาย"} & {t["token"] for t in out["explanation"]}
    case = client.get(f"/v1/cases/{out['case_id']}", headers=H_REVIEWER).json()
    assert not any(p in json.dumps(case["prediction"], ensure_ascii=False) for p in NAME_PARTS)
    queue = client.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]
    item = next(x for x in queue if x["id"] == out["case_id"])
    assert not any(p in json.dumps(item, ensure_ascii=False) for p in NAME_PARTS)
    login(client)
    page = client.get("/review").text
    assert f"/review/cases/{out['case_id']}" in page and "[name]" in page
    for part in NAME_PARTS:
        assert part not in page


# -- 4. log forging ---------------------------------------------------------------------------------

FORGED = ["bob\nINFO triage.review: review login: admin", "bob\r\nx", "bob\x1b[31m", "bob\u2028x", "bob\u202ex"]


def test_control_characters_in_names_are_refused_and_never_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    for name in FORGED:
        r = client.post("/v1/cases/1/corrections", headers=H_REVIEWER,
                        json={"reviewer": name, "reason": "x", "urgency": "low"})
        assert r.status_code == 422 and "control" in r.text, name
        r = client.post("/v1/cases/1/status", headers=H_REVIEWER, json={"status": "assigned", "actor": name})
        assert r.status_code == 422 and "control" in r.text, name
        client.cookies.clear()
        r = login(client, name=name)
        assert r.status_code == 422 and COOKIE not in client.cookies, name
    assert client.get("/v1/cases/1/history", headers=H_REVIEWER).json()["events"][-1]["kind"] == "created"
    for record in caplog.records:
        assert not has_control(record.getMessage()), record.getMessage()
    # Thai names with spaces, dots and combining marks are fine
    ok = client.post("/v1/cases/1/corrections", headers=H_REVIEWER,
                     json={"reviewer": "ด.ญ. วิไล  ศรีสุข", "reason": "x", "urgency": "low"})
    assert ok.status_code == 200


def test_log_safe_escapes_what_could_start_a_new_line_or_hide_text():
    assert log_safe("a\nb") == "a\\nb"
    assert log_safe("x\r\ny") == "x\\r\\ny"
    assert log_safe("\x1b[31mred") == "\\x1b[31mred"
    assert log_safe("a\u2028b\u202ec") == "a\\u2028b\\u202ec"
    assert log_safe("สมศรี ตรวจดี (key k-1)") == "สมศรี ตรวจดี (key k-1)"


# -- 5. key fingerprints: keyed, or a configured label per person ---------------------------------

def test_audit_names_carry_no_plain_hash_of_the_key_and_labels_tell_people_apart(tmp_path, small_model_dir):
    second = "reviewer-key-0099"
    keys = f"{INTAKE}:intake,{REVIEWER}:reviewer:somsri-desk,{second}:reviewer:anan-desk,{ADMIN}:admin"
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, api_keys=keys, review_threshold=1.0))) as c:
        ids = [c.post("/v1/triage", json={"text": t}, headers=H_INTAKE).json()["case_id"] for t in TEXTS[:3]]
        for key, case_id in ((REVIEWER, ids[0]), (second, ids[1]), (ADMIN, ids[2])):
            c.cookies.clear()
            assert login(c, key, name="ผู้ตรวจ").status_code == 303
            cookie = c.cookies[COOKIE]
            assert hashlib.sha256(key.encode()).hexdigest()[:12] not in json.dumps(cookie_data(cookie))
            version = c.get(f"/v1/cases/{case_id}", headers=H_ADMIN).json()["updated_at"]
            page = c.get("/review")
            r = c.post(f"/review/cases/{case_id}/accept", data={"csrf": csrf_of(page.text), "version": version},
                       follow_redirects=False)
            assert r.status_code == 303
        actors = [c.get(f"/v1/cases/{i}/history", headers=H_REVIEWER).json()["events"][-1]["actor"] for i in ids]
        assert "somsri-desk" in actors[0] and "anan-desk" in actors[1] and actors[0] != actors[1]
        for key in (REVIEWER, second, ADMIN):
            plain = hashlib.sha256(key.encode()).hexdigest()[:12]
            assert not any(plain in a for a in actors), actors
        # an unlabelled key is named by a keyed hash: 12 hex digits, not the plain sha256's
        assert re.search(r"\(key k-[0-9a-f]{12}\)", actors[2]), actors[2]


def test_key_entries_take_a_label_and_agency_keys_coexist():
    entries = parse_key_entries("aaaaaaaa1:intake,bbbbbbbb2:reviewer:somsri,cc:cc:cc3:admin:ops team,"
                                "dddddddd4:agency:สำนักงานเขตบางรัก")
    assert entries["aaaaaaaa1"].role == "intake" and entries["aaaaaaaa1"].label is None
    assert entries["bbbbbbbb2"].label == "somsri"
    assert entries["cc:cc:cc3"].role == "admin" and entries["cc:cc:cc3"].label == "ops team"
    assert entries["dddddddd4"].role == "agency:สำนักงานเขตบางรัก"
    assert parse_api_keys("aaaaaaaa1:intake,bbbbbbbb2:reviewer:somsri") == {"aaaaaaaa1": "intake",
                                                                           "bbbbbbbb2": "reviewer"}
    for bad in ("aaaaaaaa1:reviewer:x\ny", "aaaaaaaa1:reviewer:a,bbbbbbbb2:admin:a", "aaaaaaaa1:agency:"):
        with pytest.raises(ValueError):
            parse_key_entries(bad)


# -- 6. throttling ----------------------------------------------------------------------------------

def test_wrong_keys_are_throttled_per_client_and_logged_without_the_key(client, caplog):
    caplog.set_level(logging.INFO)
    wrong = [f"guess-{i:04d}-secret" for i in range(30)]
    codes = [client.get("/v1/cases/1", headers={"X-API-Key": k}).status_code for k in wrong]
    assert codes[0] == 401 and codes[-1] == 429
    r = client.get("/v1/cases/1", headers=H_REVIEWER)  # even the right key waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "refused" in caplog.text and "testclient" in caplog.text
    for k in wrong:
        assert k not in caplog.text


def test_wrong_logins_are_throttled_then_even_the_right_key_waits(client, caplog):
    caplog.set_level(logging.INFO)
    codes = [login(client, f"guess-{i:04d}-secret").status_code for i in range(15)]
    assert codes[0] == 401 and codes[-1] == 429
    r = login(client)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and COOKIE not in client.cookies
    assert "guess-0001-secret" not in caplog.text


# -- 8, 9: the model's path, caching ---------------------------------------------------------------

def test_model_info_shows_the_version_not_the_server_path(client, small_model_dir):
    for headers in (H_INTAKE, H_REVIEWER, H_ADMIN):
        r = client.get("/v1/model", headers=headers)
        assert r.status_code == 200 and r.json()["version"]
        assert "path" not in r.json() and str(small_model_dir) not in r.text and "/models" not in r.text
    r = client.post("/v1/admin/reload", headers=H_ADMIN)
    assert r.status_code == 200 and str(small_model_dir) not in r.text


def test_responses_with_complaint_text_are_not_stored_by_caches(client):
    out = client.post("/v1/triage", json={"text": TEXTS[4], "reporter_contact": "081-111-2222"}, headers=H_INTAKE)
    batch = client.post("/v1/triage/batch", json={"items": [{"text": TEXTS[5]}]}, headers=H_INTAKE)
    case_id = out.json()["case_id"]
    for r in (out, batch, client.get(f"/v1/cases/{case_id}", headers=H_ADMIN),
              client.get("/v1/cases", headers=H_REVIEWER), client.get("/v1/review/queue", headers=H_REVIEWER),
              client.get(f"/v1/cases/{case_id}/history", headers=H_REVIEWER),
              client.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER,
                          json={"reviewer": "r", "reason": "x", "urgency": "low"}),
              client.post(f"/v1/cases/{case_id}/status", headers=H_REVIEWER,
                          json={"status": "assigned", "actor": "r"}),
              client.get("/v1/cases/999999", headers=H_REVIEWER)):
        assert r.status_code < 500 and r.headers.get("cache-control") == "no-store", (r.request.url, r.headers)


# -- 10. file modes ---------------------------------------------------------------------------------

def test_data_folder_is_private_and_the_database_is_owner_only(tmp_path, small_model_dir):
    data = tmp_path / "fresh" / "data"
    old = os.umask(0o022)
    try:
        with TestClient(create_app(settings_for(data, small_model_dir))) as c:
            assert c.post("/v1/triage", json={"text": TEXTS[0]}, headers=H_INTAKE).status_code == 201
            modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in data.iterdir()}
            assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
            for name in ("triage.db", "triage.db-wal", "triage.db-shm"):
                assert modes[name] == 0o600, (name, oct(modes[name]))
    finally:
        os.umask(old)
