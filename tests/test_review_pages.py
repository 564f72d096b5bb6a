"""The review pages through TestClient: access, CSRF, stale forms, and the store's read helpers.

The browser tests (test_review_browser.py) drive the same pages in chromium; these are the fast
checks of what a browser cannot easily show: status codes, refusals and what was (not) stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
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
from triage.database import open_store
from triage.review import COOKIE, age, rate_chart, sign, unsign, week_starts

PAGES = ["/review", "/review/overview", "/review/cases/1"]
POSTS = ["/review/cases/1/accept", "/review/cases/1/correct", "/review/cases/1/status", "/review/logout"]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path):
    settings = settings_for(tmp_path_factory.mktemp("review"), small_model_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def client(app_client: TestClient):
    """The module's app with no cookies and a fresh batch of cases (some of which need review)."""
    app_client.cookies.clear()
    items = [{"text": t, "district": "บางรัก" if i % 2 else None} for i, t in enumerate(TEXTS)]
    assert app_client.post("/v1/triage/batch", json={"items": items}, headers=H_INTAKE).status_code == 200
    yield app_client
    app_client.cookies.clear()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, key: str = REVIEWER, name: str = "สมศรี ตรวจดี") -> object:
    page = client.get("/review/login")
    return client.post("/review/login", data={"csrf": csrf_of(page.text), "key": key, "name": name,
                                              "next": "/review"}, follow_redirects=False)


def queued(client: TestClient) -> list[dict]:
    return client.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]


def test_every_page_is_refused_without_a_reviewer(client):
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert "<textarea" not in r.text and "ไฟฟ้า" not in r.text, path
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login?"), path
        assert client.get(path, headers=H_INTAKE).status_code == 403, path
        assert client.get(path, headers={"X-API-Key": "not-a-key-at-all"}).status_code == 401, path
    before = client.get("/v1/cases/1/history", headers=H_REVIEWER).json()["events"]
    for path in POSTS:
        r = client.post(path, data={"reason": "x", "topics": "ไฟฟ้า", "action": "escalate"}, follow_redirects=False)
        assert r.status_code == 303 and "/review/login" in r.headers["location"], path
        assert client.post(path, data={"reason": "x"}, headers=H_INTAKE).status_code == 403, path
    assert client.get("/v1/cases/1/history", headers=H_REVIEWER).json()["events"] == before


def test_intake_and_unknown_keys_cannot_log_in(client):
    r = login(client, INTAKE)
    assert r.status_code == 403 and "reviewer" in r.text and COOKIE not in client.cookies
    r = login(client, "wrong-key-123456")
    assert r.status_code == 401 and COOKIE not in client.cookies
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_login_sets_a_strict_http_only_cookie_and_pages_work(client):
    r = login(client)
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = next(h for k, h in r.headers.multi_items() if k == "set-cookie" and h.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie
    assert REVIEWER not in cookie
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200 and '<html lang="th">' in page.text, path
        assert page.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in page.headers[
            "content-security-policy"]
    assert client.get("/review/cases/999999").status_code == 404


def test_login_needs_its_form_token_and_a_name(client):
    client.get("/review/login")
    r = client.post("/review/login", data={"csrf": "forged", "key": REVIEWER, "name": "x"}, follow_redirects=False)
    assert r.status_code == 400 and COOKIE not in client.cookies
    page = client.get("/review/login")
    r = client.post("/review/login", data={"csrf": csrf_of(page.text), "key": REVIEWER, "name": " "},
                    follow_redirects=False)
    assert r.status_code == 422 and COOKIE not in client.cookies


def test_login_goes_back_only_to_review_pages(client):
    page = client.get("/review/login")
    r = client.post("/review/login", data={"csrf": csrf_of(page.text), "key": ADMIN, "name": "a",
                                           "next": "https://evil.example/review"}, follow_redirects=False)
    assert r.headers["location"] == "/review"


def test_a_tampered_or_foreign_cookie_is_no_session(client):
    login(client)
    value = client.cookies[COOKIE]
    body, _, mac = value.rpartition(".")
    client.cookies.clear()
    client.cookies.set(COOKIE, body[:-2] + "xx." + mac, path="/review")
    assert client.get("/review", follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set(COOKIE, sign(b"x" * 32, {"fp": "abc", "name": "x", "csrf": "y", "iat": 0}), path="/review")
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_forms_without_the_session_token_change_nothing(client):
    login(client)
    case = queued(client)[0]
    for path, data in ((f"/review/cases/{case['id']}/accept", {}),
                       (f"/review/cases/{case['id']}/correct", {"topics": case["topics"], "reason": "x"}),
                       (f"/review/cases/{case['id']}/status", {"action": "escalate"})):
        r = client.post(path, data={**data, "csrf": "forged", "version": case["updated_at"]}, follow_redirects=False)
        assert r.status_code == 400 and "CSRF" in r.text, path
    assert client.get(f"/v1/cases/{case['id']}", headers=H_REVIEWER).json()["updated_at"] == case["updated_at"]


def test_a_stale_form_is_refused_and_keeps_what_was_typed(client):
    login(client)
    case = queued(client)[0]
    page = client.get(f"/review/cases/{case['id']}").text
    token, version = csrf_of(page), case["updated_at"]
    levels = client.get("/v1/model", headers=H_REVIEWER).json()["labels"]["urgency"]
    other = next(u for u in levels if u != case["urgency"])
    first = client.post(f"/review/cases/{case['id']}/correct", follow_redirects=False,
                        data={"csrf": token, "version": version, "topics": case["topics"], "urgency": other,
                              "reason": "ความเร่งด่วนผิด"})
    assert first.status_code == 303 and first.headers["location"].endswith("msg=saved")
    again = client.post(f"/review/cases/{case['id']}/correct",
                        data={"csrf": token, "version": version, "topics": case["topics"], "urgency": case["urgency"],
                              "reason": "เหตุผลจากแท็บที่สอง"})
    assert again.status_code == 409
    assert "แก้ไขโดยผู้อื่น" in again.text and "NOT saved" in again.text and "เหตุผลจากแท็บที่สอง" in again.text
    corrections = client.get(f"/v1/cases/{case['id']}/history", headers=H_REVIEWER).json()["events"]
    assert [e["kind"] for e in corrections].count("correction") == 1
    moved = client.post(f"/review/cases/{case['id']}/status",
                        data={"csrf": token, "version": version, "action": "escalate", "note": "ด่วน"})
    assert moved.status_code == 409 and client.get(f"/v1/cases/{case['id']}", headers=H_REVIEWER).json()[
        "status"] == "new"


def test_correct_records_only_what_changed_and_refuses_unknown_labels(client):
    login(client)
    case = queued(client)[0]
    token = csrf_of(client.get(f"/review/cases/{case['id']}").text)
    bad = client.post(f"/review/cases/{case['id']}/correct",
                      data={"csrf": token, "version": case["updated_at"], "topics": "ไม่มีหัวข้อนี้", "reason": "x"})
    assert bad.status_code == 422 and "ไม่มีหัวข้อนี้" in bad.text
    r = client.post(f"/review/cases/{case['id']}/correct", follow_redirects=False,
                    data={"csrf": token, "version": case["updated_at"], "topics": case["topics"],
                          "urgency": case["urgency"], "agencies": ["สน.บางซื่อ", ""], "reason": "หน่วยงานผิด"})
    assert r.status_code == 303
    after = client.get(f"/v1/cases/{case['id']}", headers=H_REVIEWER).json()
    assert after["agencies"] == ["สน.บางซื่อ"] and after["topics"] == case["topics"]
    assert after["id"] not in [c["id"] for c in queued(client)]
    history = client.get(f"/v1/cases/{case['id']}/history", headers=H_REVIEWER).json()["events"]
    assert history[-1]["note"] == "corrected agencies: หน่วยงานผิด" and "สมศรี ตรวจดี" in history[-1]["actor"]


def test_accept_forward_and_escalate(client):
    login(client)
    first, second = queued(client)[:2]
    token = csrf_of(client.get("/review").text)
    r = client.post(f"/review/cases/{first['id']}/accept", follow_redirects=False,
                    data={"csrf": token, "version": first["updated_at"], "back": "urgency=high&evil=1", "focus": "0"})
    assert r.status_code == 303 and "msg=accepted" in r.headers["location"] and "evil" not in r.headers["location"]
    assert first["id"] not in [c["id"] for c in queued(client)]
    r = client.post(f"/review/cases/{second['id']}/status", follow_redirects=False,
                    data={"csrf": token, "version": second["updated_at"], "action": "forward",
                          "agency": "การไฟฟ้านครหลวง เขตคลองเตย", "note": "สายไฟ"})
    assert r.status_code == 303
    case = client.get(f"/v1/cases/{second['id']}", headers=H_REVIEWER).json()
    assert case["status"] == "forwarded" and case["agency"] == "การไฟฟ้านครหลวง เขตคลองเตย"
    r = client.post(f"/review/cases/{second['id']}/status",
                    data={"csrf": token, "version": case["updated_at"], "action": "forward",
                          "agency": case["agency_path"][0]})
    assert r.status_code == 409 and "loop" in r.text  # back to where it was: a forwarding loop
    r = client.post(f"/review/cases/{second['id']}/status", follow_redirects=False,
                    data={"csrf": token, "version": case["updated_at"], "action": "escalate"})
    assert r.status_code == 303
    assert client.get(f"/v1/cases/{second['id']}", headers=H_REVIEWER).json()["status"] == "escalated"


def test_queue_filters_and_logout(client):
    login(client)
    everything = client.get("/review").text
    r = client.get("/review", params={"district": "บางรัก"})
    assert r.status_code == 200
    shown = set(re.findall(r'id="case-(\d+)"', r.text))
    expected = {str(c["id"]) for c in queued(client) if c["district"] == "บางรัก"}
    assert shown == expected and shown < set(re.findall(r'id="case-(\d+)"', everything))
    r = client.post("/review/logout", data={"csrf": csrf_of(everything)}, follow_redirects=False)
    assert r.status_code == 303 and COOKIE not in client.cookies
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_a_session_ends_when_its_key_is_removed(tmp_path, small_model_dir):
    with TestClient(create_app(settings_for(tmp_path, small_model_dir))) as c:
        login(c)
        value = c.cookies[COOKIE]
    other_keys = f"{INTAKE}:intake,{ADMIN}:admin"
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, api_keys=other_keys))) as c:
        c.cookies.set(COOKIE, value, path="/review")
        assert c.get("/review", follow_redirects=False).status_code == 303


def test_overview_shows_counts_chart_and_model(client):
    login(client)
    page = client.get("/review/overview").text
    model = client.get("/v1/model", headers=H_ADMIN).json()
    assert model["version"] in page and 'id="chart-topic"' in page and "<circle" in page
    assert 'id="per-agency"' in page and 'id="waiting"' in page


# -- pure pieces and the store's helpers ---------------------------------------------------------

def test_signed_values_round_trip_and_expire():
    value = sign(b"k" * 32, {"a": "ไทย", "iat": int(datetime.now(UTC).timestamp())})
    assert unsign(b"k" * 32, value, 60)["a"] == "ไทย"
    assert unsign(b"j" * 32, value, 60) is None
    assert unsign(b"k" * 32, sign(b"k" * 32, {"iat": 1}), 60) is None
    assert unsign(b"k" * 32, "garbage", 60) is None


def test_age_and_weeks():
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert age("2026-11-26T11:30:00+00:00", now) == {"th": "30 นาที", "en": "30 min"}
    assert age("2026-11-20T12:00:00+00:00", now)["th"] == "6 วัน"
    assert week_starts(now, 3) == ["2026-11-09", "2026-11-16", "2026-11-23"]


def test_rate_chart_has_a_line_per_top_label_and_gaps_for_empty_weeks():
    weeks = ["2026-11-09", "2026-11-16", "2026-11-23"]
    rows = [{"week": "2026-11-09", "label": "ไฟฟ้า", "n": 4, "changed": 1},
            {"week": "2026-11-23", "label": "ไฟฟ้า", "n": 2, "changed": 2},
            {"week": "2026-11-16", "label": "ถนน", "n": 1, "changed": 0}]
    chart = rate_chart(rows, weeks)
    by_label = {s["label"]: s for s in chart["series"]}
    assert list(by_label) == ["ทั้งหมด · all", "ไฟฟ้า", "ถนน"]
    assert [p["rate"] for p in by_label["ไฟฟ้า"]["points"]] == [0.25, 1.0]
    assert by_label["ไฟฟ้า"]["path"].count("M") == 2  # the empty week is a gap, not a line through zero
    assert chart["series"][0]["points"][1]["rate"] == 0.0
    assert all(chart["top"] <= p["y"] <= chart["bottom"] for s in chart["series"] for p in s["points"])


def record(topic: str, agency: str) -> dict:
    return {"text": "ไฟดับ", "masked_text": "ไฟดับ", "district": "บางรัก", "source": "t", "external_id": None,
            "reporter_contact": None, "model_version": "m1",
            "prediction": {"topics": [topic], "agencies": [agency]}, "topics": [topic], "urgency": "medium",
            "urgency_rank": 1, "agencies": [agency], "needs_review": True, "review_reasons": ["low_confidence"]}


def test_store_correction_rates_count_changes_not_confirmations(db_url):
    store = open_store(db_url)
    try:
        cases = [c for c, _ in store.create_cases([record("ไฟฟ้า", "A"), record("ไฟฟ้า", "A"), record("ถนน", "B")])]
        store.add_correction(cases[0]["id"], "r", "confirm", ["ไฟฟ้า"], "medium", 1, None)
        store.add_correction(cases[1]["id"], "r", "wrong", ["ถนน"], None, None, None)
        store.add_correction(cases[2]["id"], "r", "agency", None, None, None, ["C"])
        rates = {(r["label"], r["n"], r["changed"]) for r in store.correction_rates("2000-01-01", "topic")}
        assert rates == {("ไฟฟ้า", 2, 1), ("ถนน", 1, 1)}
        by_agency = {r["label"]: r["changed"] for r in store.correction_rates("2000-01-01", "agency")}
        assert by_agency == {"A": 1, "B": 1}
        week = store.correction_rates("2000-01-01", "topic")[0]["week"]
        assert datetime.fromisoformat(week).weekday() == 0
        assert store.corrections_since("2000-01-01") == 3
    finally:
        store.close()


def test_store_queue_filters_and_overview(db_url):
    store = open_store(db_url)
    try:
        store.create_cases([record("ไฟฟ้า", "A"), record("ถนน", "B"), {**record("น้ำ", "B"), "district": "ดุสิต"}])
        assert store.review_queue_filtered(agency="B")[1] == 2
        assert store.review_queue_filtered(agency="B", district="ดุสิต")[1] == 1
        assert store.queue_facets()["district"] == ["ดุสิต", "บางรัก"]
        counts = store.overview_counts(["2000-01-01", "2999-01-01"])
        assert counts["waiting"][0]["n"] == 3 and counts["waiting"][0]["newer"] == [3, 0]
        assert {r["agency"]: r["n"] for r in counts["per_agency"]} == {"A": 1, "B": 2}
    finally:
        store.close()


def test_save_and_next_opens_the_next_case_in_the_queue(client):
    login(client)
    first, second = queued(client)[:2]
    token = csrf_of(client.get(f"/review/cases/{first['id']}").text)
    r = client.post(f"/review/cases/{first['id']}/correct", follow_redirects=False,
                    data={"csrf": token, "version": first["updated_at"], "topics": first["topics"],
                          "reason": "ถูกต้อง", "then": "next"})
    assert r.status_code == 303 and r.headers["location"] == f"/review/cases/{second['id']}?msg=saved"


def test_a_script_with_a_reviewer_key_needs_no_cookie_or_form_token(client):
    case = queued(client)[0]
    r = client.post(f"/review/cases/{case['id']}/accept", headers=H_REVIEWER, follow_redirects=False,
                    data={"version": case["updated_at"]})
    assert r.status_code == 303  # a custom header cannot come from another site's form: no CSRF risk
    history = client.get(f"/v1/cases/{case['id']}/history", headers=H_REVIEWER).json()["events"]
    assert history[-1]["kind"] == "correction" and history[-1]["actor"].startswith("api (key ")


def test_development_mode_lets_anyone_in_and_says_so(tmp_path, small_model_dir):
    settings = settings_for(tmp_path, small_model_dir, api_keys="", dev_mode=True)
    with TestClient(create_app(settings)) as c:
        r = login(c, key="anything")
        assert r.status_code == 303
        assert "Development mode" in c.get("/review").text


def test_store_one_writer_wins_per_version_and_a_refused_step_keeps_it(db_url):
    import threading

    from triage.errors import ConflictError
    from triage.store import StaleError

    stores = [open_store(db_url) for _ in range(4)]  # separate connections, as worker processes have
    try:
        case = stores[0].create_cases([record("ไฟฟ้า", "A")])[0][0]
        outcomes: list[str] = []

        def save(n: int) -> None:
            try:
                stores[n % 4].correct_at_version(case["id"], case["updated_at"], f"r{n}", "x", None, "low", 2, None)
                outcomes.append("saved")
            except StaleError:
                outcomes.append("stale")

        threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["saved"] + ["stale"] * 7
        assert len(stores[0].corrections(case["id"])) == 1
        now_at = stores[0].get_case(case["id"])["updated_at"]
        with pytest.raises(ConflictError, match="loop"):
            stores[1].change_status_at_version(case["id"], now_at, "forwarded", "A", "r", None)
        assert stores[0].get_case(case["id"])["updated_at"] == now_at  # the refused step changed nothing
        stores[2].change_status_at_version(case["id"], now_at, "escalated", "B", "r", None)
    finally:
        for s in stores:
            s.close()
