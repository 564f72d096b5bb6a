"""Issue 10 on the review pages (TestClient, real SQLite): deadlines, overdue first, public notes from
the forms, escalations and the agencies' ratings on the overview; and the pure parts underneath."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_helpers import H_INTAKE, H_REVIEWER, TEXTS, settings_for
from fastapi.testclient import TestClient
from test_review_pages import csrf_of, login

from triage.app import create_app
from triage.config import Settings, parse_api_keys
from triage.errors import ConfigError
from triage.outbox import backoff, event_body, signature, verify
from triage.routing import Directory
from triage.sla import deadline_for, escalation_target, parse_sla_hours
from triage.tracking import ALPHABET, looks_like_code, new_tracking_code, public_view

CENTRAL = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"


@pytest.fixture()
def setup(tmp_path: Path, small_model_dir: Path):
    settings = settings_for(tmp_path, small_model_dir, review_threshold=0.99, sla_check_seconds=3600)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        items = [{"text": t, "district": "บางรัก"} for t in TEXTS[:4]]
        out = c.post("/v1/triage/batch", json={"items": items}, headers=H_INTAKE).json()["results"]
        yield c, tmp_path / "triage.db", out


def test_queue_puts_overdue_cases_first_and_pages_show_deadlines(setup):
    client, db, out = setup
    normal = client.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]
    late = normal[-1]["id"]
    past = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="microseconds")
    with sqlite3.connect(db) as con:  # as if two hours had passed since its deadline
        con.execute("UPDATE cases SET deadline = ? WHERE id = ?", (past, late))
    queue = client.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]
    assert queue[0]["id"] == late and queue[0]["overdue"] is True
    assert [c["id"] for c in queue[1:]] == [c["id"] for c in normal[:-1]]
    login(client)
    page = client.get("/review").text
    rows = re.findall(r'id="case-(\d+)"', page)
    assert int(rows[0]) == late
    assert 'class="deadline overdue"' in page and "เลยกำหนด" in page and "กำหนด <span" in page
    overview = client.get("/review/overview").text
    table = re.search(r'<table id="deadlines">.*?</table>', overview, re.DOTALL).group(0)
    first_row = re.search(r"<tr class=\"overdue\"><th scope=\"row\"><a href=\"[^\"]+/cases/(\d+)\">", table)
    assert first_row and int(first_row.group(1)) == late
    case_page = client.get(f"/review/cases/{late}").text
    assert "เลยกำหนด" in case_page and out[-1]["tracking_code"] in client.get(f"/review/cases/{out[-1]['case_id']}").text


def test_public_note_from_the_case_form_reaches_the_tracking_page(setup):
    client, _, out = setup
    case = out[0]
    login(client)
    page = client.get(f"/review/cases/{case['case_id']}").text
    current = client.get(f"/v1/cases/{case['case_id']}", headers=H_REVIEWER).json()
    r = client.post(f"/review/cases/{case['case_id']}/status", follow_redirects=False,
                    data={"csrf": csrf_of(page), "version": current["updated_at"], "action": "forward",
                          "agency": "สำนักงานเขตดุสิต", "note": "ภายใน: ผิดเขต", "public_note": "ส่งต่อเขตดุสิตแล้ว"})
    assert r.status_code == 303
    view = client.get(f"/v1/track/{case['tracking_code']}").json()
    assert view["steps"][-1] == {"at": view["steps"][-1]["at"], "status": "forwarded", "agency": "สำนักงานเขตดุสิต",
                                 "note": "ส่งต่อเขตดุสิตแล้ว"}
    assert "ผิดเขต" not in str(view)
    history = client.get(f"/review/cases/{case['case_id']}").text
    assert "ส่งต่อเขตดุสิตแล้ว" in history and "ผิดเขต" in history


def test_overview_rates_agencies_and_lists_escalations(setup):
    client, _, out = setup
    for case in out[:2]:
        for status in ("forwarded", "assigned", "in_progress", "resolved"):
            assert client.post(f"/v1/cases/{case['case_id']}/status", headers=H_REVIEWER,
                               json={"actor": "s", "status": status, "agency": "สำนักงานเขตดุสิต"}).status_code == 200
    stars = [5, 2]
    for case, n in zip(out[:2], stars, strict=True):
        assert client.post(f"/v1/track/{case['tracking_code']}/feedback", json={"stars": n}).status_code == 200
    assert client.post(f"/v1/cases/{out[2]['case_id']}/status", json={"actor": "s", "status": "escalated"},
                       headers=H_REVIEWER).status_code == 200
    agency = "สำนักงานเขตดุสิต"
    login(client)
    overview = client.get("/review/overview").text
    ratings = re.search(r'<table id="ratings">.*?</table>', overview, re.DOTALL).group(0)
    row = re.search(rf"<tr><th scope=\"row\">{re.escape(agency)}</th>(.*?)</tr>", ratings, re.DOTALL)
    assert row and "3.5 ★" in row.group(1) and "(2)" in row.group(1)
    escalations = re.search(r'<table id="escalations">.*?</table>', overview, re.DOTALL).group(0)
    assert f"#{out[2]['case_id']}" in escalations and CENTRAL in escalations


# -- the pure parts ----------------------------------------------------------------------------

def test_sla_hours_parse_with_fractions_and_refuse_nonsense():
    assert parse_sla_hours("high=24,medium=72,low=360") == {"high": 24, "medium": 72, "low": 360}
    assert parse_sla_hours(" high=0.5 , low=1e-3 ") == {"high": 0.5, "low": 0.001}
    for bad in ("", "high", "high=", "high=-1", "high=nan", "=3", "high=soon"):
        with pytest.raises(ValueError, match="SLA"):
            parse_sla_hours(bad)
    start = "2026-01-01T00:00:00.000000+00:00"
    assert deadline_for(start, "high", {"high": 0.5, "low": 10}) == "2026-01-01T00:30:00.000000+00:00"
    assert deadline_for(start, None, {"high": 0.5, "low": 10}) == "2026-01-01T10:00:00.000000+00:00"


def test_escalation_goes_to_the_nearest_parent_not_yet_visited_else_central():
    d = Directory.load()
    assert escalation_target(d, "ฝ่ายโยธา เขตบางนา", ["ฝ่ายโยธา เขตบางนา"], CENTRAL) == "สำนักงานเขตบางนา"
    assert escalation_target(d, "ฝ่ายโยธา เขตบางนา", ["สำนักงานเขตบางนา", "ฝ่ายโยธา เขตบางนา"], CENTRAL) == "กรุงเทพมหานคร"
    assert escalation_target(d, "กรุงเทพมหานคร", ["กรุงเทพมหานคร"], CENTRAL) == CENTRAL
    assert escalation_target(d, CENTRAL, ["x", CENTRAL], CENTRAL) is None
    assert escalation_target(d, "not in the directory", [], CENTRAL) == CENTRAL


def test_tracking_codes_and_signatures():
    codes = {new_tracking_code() for _ in range(2000)}
    assert len(codes) == 2000 and all(len(c) >= 16 and looks_like_code(c) for c in codes)
    seen = Counter("".join(codes))  # 40,000 characters: every one of the 31 about equally often (1,290)
    assert set(seen) == set(ALPHABET) and min(seen.values()) > 1100 and max(seen.values()) < 1480
    assert not looks_like_code("short") and not looks_like_code("ก" * 20) and not looks_like_code("A" * 65)
    body = event_body(1, "CODE", "resolved", "x", "2026-01-01T00:00:00+00:00", None).encode()
    assert verify("s" * 16, body, signature("s" * 16, body)) and not verify("t" * 16, body, signature("s" * 16, body))
    assert [backoff(n, 5, 60) for n in (1, 2, 3, 10)] == [5, 10, 20, 60]
    view = public_view({"status": "new", "agency": "A", "created_at": "t0", "deadline": "t9"},
                       [{"kind": "created", "at": "t0", "to_status": "new", "agency": "A", "actor": "line",
                         "note": "triaged by model"},
                        {"kind": "correction", "at": "t1", "to_status": "new", "agency": "A", "actor": "reviewer",
                         "note": "wrong"}])
    assert view["updated_at"] == "t0" and [s["note"] for s in view["steps"]] == [None]


def test_agency_keys_parse_and_unknown_names_refuse_to_start(tmp_path):
    keys = parse_api_keys("k-intake-1:intake,k-agency-1:agency:สำนักงานเขตบางรัก")
    assert keys == {"k-intake-1": "intake", "k-agency-1": "agency:สำนักงานเขตบางรัก"}
    Settings(api_keys="k-agency-1:agency:สำนักงานเขตบางรัก", data_dir=tmp_path).check_serving()
    with pytest.raises(ConfigError, match=r"agencies\.toml"):
        Settings(api_keys="k-agency-1:agency:สำนักงานเขตไม่มีจริง", data_dir=tmp_path).check_serving()
    with pytest.raises(ValueError, match="agency"):
        parse_api_keys("short:agency:สำนักงานเขตบางรัก")
