"""The HTTP API through TestClient: happy paths, roles, idempotency, review, workflow, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_helpers import H_ADMIN, H_INTAKE, H_REVIEWER, TEXTS, settings_for
from fastapi.testclient import TestClient

from triage.app import create_app
from triage.cases import allowed_agencies
from triage.database import open_store
from triage.routing import Router

AWKWARD = [
    "ไฟ\u200bดับ\u200bทั้ง\u200bซอย",
    "5555555 ถนนพังงงงงง ๆๆๆ ค่ะะะะ",
    "ถนน broken มากๆ 😡😡 call 081-234-5678",
    "บ้านเลขที่ ๑๒/๓๔ น้ำไม่ไหล",
    "ร้องเรียน " * 900,
]


@pytest.fixture()
def client(tmp_path: Path, small_model_dir: Path, db_url: str):
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, database_url=db_url)),
                    raise_server_exceptions=False) as c:
        yield c


def _triage(client: TestClient, text: str = TEXTS[0], **extra: object) -> dict:
    r = client.post("/v1/triage", json={"text": text, **extra}, headers=H_INTAKE)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_health_and_ready_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    assert "/v1/triage" in client.get("/openapi.json").json()["paths"]


def test_triage_returns_the_documented_fields_and_stores_the_case(client):
    r = client.post("/v1/triage", json={"text": TEXTS[0], "district": "บางรัก", "source": "line",
                                        "reporter_contact": "081-234-5678"}, headers=H_INTAKE)
    assert r.status_code == 201
    out = r.json()
    for key in ("case_id", "topics", "topic_scores", "urgency", "urgency_scores", "agencies", "needs_review",
                "explanation", "model_version"):
        assert key in out
    assert out["topics"] and out["agencies"] and out["urgency"] in ("high", "medium", "low")
    assert abs(sum(out["urgency_scores"].values()) - 1) < 0.01
    case = client.get(f"/v1/cases/{out['case_id']}", headers=H_REVIEWER).json()
    assert case["text"] == TEXTS[0] and case["status"] == "new" and case["model_version"] == out["model_version"]
    assert case["prediction"]["topics"] == out["topics"] and case["agency"] == out["agencies"][0]
    assert case["reporter_contact"] is None  # reviewers do not see it
    as_admin = client.get(f"/v1/cases/{out['case_id']}", headers=H_ADMIN).json()
    assert as_admin["reporter_contact"] == "081-234-5678"


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_thai_gets_a_clean_answer(client, text):
    out = _triage(client, text)
    assert out["topics"]


def test_masked_text_hides_personal_data(client):
    out = _triage(client, "นายสมชาย ใจดี โทร 081-234-5678 แจ้งว่าไฟดับ")
    case = client.get("/v1/cases", headers=H_REVIEWER).json()["items"][0]
    assert case["id"] == out["case_id"]
    assert "081-234-5678" not in case["masked_text"] and "สมชาย" not in case["masked_text"]
    assert case["text"] is None  # lists show masked text only


def test_same_external_id_returns_the_same_case(client):
    first = client.post("/v1/triage", json={"text": TEXTS[1], "external_id": "line-42"}, headers=H_INTAKE)
    again = client.post("/v1/triage", json={"text": TEXTS[1], "external_id": "line-42"}, headers=H_INTAKE)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["case_id"] == first.json()["case_id"] and again.json()["created"] is False
    clash = client.post("/v1/triage", json={"text": TEXTS[2], "external_id": "line-42"}, headers=H_INTAKE)
    assert clash.status_code == 409 and "line-42" in clash.json()["error"]
    assert len(client.get("/v1/cases", headers=H_REVIEWER).json()["items"]) == 1


def test_batch(client):
    items = [{"text": t, "external_id": f"b-{i}"} for i, t in enumerate(TEXTS)] + [{"text": TEXTS[0],
                                                                                   "external_id": "b-0"}]
    r = client.post("/v1/triage/batch", json={"items": items}, headers=H_INTAKE)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(items) and results[-1]["case_id"] == results[0]["case_id"]
    assert [x["created"] for x in results] == [True] * len(TEXTS) + [False]


def test_oversized_batch_is_413_and_stores_nothing(tmp_path, small_model_dir, db_url):
    app = create_app(settings_for(tmp_path, small_model_dir, max_batch=3, database_url=db_url))
    with TestClient(app) as c:
        r = c.post("/v1/triage/batch", json={"items": [{"text": t} for t in TEXTS[:4]]}, headers=H_INTAKE)
        assert r.status_code == 413 and "at most 3" in r.json()["error"]
        bad = c.post("/v1/triage/batch", json={"items": [{"text": TEXTS[0]}, {"text": "   "}]}, headers=H_INTAKE)
        assert bad.status_code == 422 and "items[1]" in bad.json()["error"]
        assert c.get("/v1/cases", headers=H_ADMIN).json()["items"] == []


def test_keys_and_roles(client):
    body = {"text": TEXTS[0]}
    assert client.post("/v1/triage", json=body).status_code == 401
    assert client.post("/v1/triage", json=body, headers={"X-API-Key": "wrong-key-123"}).status_code == 401
    assert client.post("/v1/triage", json=body, headers=H_REVIEWER).status_code == 403
    assert client.get("/v1/cases", headers=H_INTAKE).status_code == 403
    assert client.post("/v1/admin/reload", headers=H_REVIEWER).status_code == 403
    assert client.post("/v1/triage", json=body, headers=H_ADMIN).status_code == 201
    assert client.get("/v1/cases", headers=H_ADMIN).status_code == 200


def test_bad_input_is_a_clear_4xx(client):
    h = {**H_INTAKE, "content-type": "application/json"}
    cases = [
        ({"text": ""}, 422, "empty"),
        ({"text": "   \n\t "}, 422, "empty"),
        ({"text": "!!! ???"}, 422, "no letters"),
        ({"text": "ก" * 10_001}, 413, "at most 10000"),
        ({"text": 5}, 422, "text"),
        ({"text": ["a"]}, 422, "text"),
        ({}, 422, "text"),
        ({"text": "ไฟดับ", "colour": "red"}, 422, "colour"),
        ({"text": "ไฟดับ", "district": 3}, 422, "district"),
        ([1, 2], 422, "body"),
    ]
    for body, code, words in cases:
        r = client.post("/v1/triage", content=json.dumps(body), headers=h)
        assert r.status_code == code, (body, r.text)
        assert words in r.json()["error"], (body, r.json())
    r = client.post("/v1/triage", content=b'{"text": "\xff\xfe bad"}', headers=h)
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]
    r = client.post("/v1/triage", content=b'{"text": ', headers=h)
    assert r.status_code == 400
    r = client.post("/v1/triage", content='{"text": "\\ud800 lone"}', headers=h)
    assert r.status_code == 422 and "unicode" in r.json()["error"].lower()
    r = client.post("/v1/triage", content=b'{"text": "' + b"a" * 2_100_000 + b'"}', headers=h)
    assert r.status_code == 413
    streamed = client.post("/v1/triage", content=iter([b'{"text": "'] + [b"a" * 100_000] * 25 + [b'"}']), headers=h)
    assert streamed.status_code == 413 and "bytes" in streamed.json()["error"]
    assert client.get("/v1/cases/0", headers=H_REVIEWER).status_code == 422
    assert client.get("/v1/cases/99999999999999999999999", headers=H_REVIEWER).status_code == 422
    assert client.get("/v1/cases/abc", headers=H_REVIEWER).status_code == 422
    assert client.get("/v1/cases/12345", headers=H_REVIEWER).status_code == 404
    assert client.get("/v1/cases?cursor=xyz", headers=H_REVIEWER).status_code == 422
    assert client.get("/v1/cases?limit=0", headers=H_REVIEWER).status_code == 422
    assert client.get("/nothing-here").status_code == 404


def test_list_filters_and_cursor_pagination(client):
    ids = [_triage(client, t, district="บางรัก")["case_id"] for t in TEXTS]
    seen, cursor = [], None
    while True:
        url = "/v1/cases?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=H_REVIEWER).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    client.post(f"/v1/cases/{ids[0]}/status", json={"status": "assigned", "actor": "staff-1"}, headers=H_REVIEWER)
    assigned = client.get("/v1/cases?status=assigned", headers=H_REVIEWER).json()["items"]
    assert [c["id"] for c in assigned] == [ids[0]]
    agency = assigned[0]["agency"]
    assert ids[0] in [c["id"] for c in client.get("/v1/cases", params={"agency": agency}, headers=H_REVIEWER).json()["items"]]
    urgency = assigned[0]["urgency"]
    by_urgency = client.get("/v1/cases", params={"urgency": urgency}, headers=H_REVIEWER).json()["items"]
    assert by_urgency and all(c["urgency"] == urgency for c in by_urgency)
    flagged = client.get("/v1/cases?needs_review=true", headers=H_REVIEWER).json()["items"]
    assert all(c["needs_review"] for c in flagged)


def test_review_queue_order_and_corrections(tmp_path, small_model_dir, db_url):
    # a threshold of 1.0 sends most cases to review (a topic the model is sure of can score 1.0), so
    # the queue holds exactly the cases flagged at triage, and their order is what is tested
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, review_threshold=1.0,
                                                         database_url=db_url))) as c:
        results = [_triage(c, t) for t in TEXTS]
        ids = [r["case_id"] for r in results]
        queue = c.get("/v1/review/queue", headers=H_REVIEWER).json()
        flagged = {r["case_id"] for r in results if r["needs_review"]}
        assert len(flagged) >= 4
        assert {x["id"] for x in queue["items"]} == flagged and queue["total"] == len(flagged)
        ranks = {"high": 0, "medium": 1, "low": 2}
        keys = [(ranks[x["urgency"]], x["created_at"]) for x in queue["items"]]
        assert keys == sorted(keys)
        model = c.get("/v1/model", headers=H_REVIEWER).json()
        topics = model["labels"]["topic"]

        case_id = ids[1]
        before = c.get(f"/v1/cases/{case_id}", headers=H_REVIEWER).json()
        r = c.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER, json={
            "reviewer": "rev-7", "reason": "หลุมบนถนน", "topics": [topics[0]], "urgency": "low",
            "agencies": ["สำนักงานเขตบางรัก"]})
        assert r.status_code == 200, r.text
        after = r.json()
        assert after["topics"] == [topics[0]] and after["urgency"] == "low" and after["corrected"]
        assert after["prediction"] == before["prediction"]  # the model's answer is kept
        assert not after["needs_review"]
        assert case_id not in [x["id"] for x in c.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]]
        second = c.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER,
                        json={"reviewer": "rev-8", "reason": "second look", "urgency": "medium"})
        assert second.json()["urgency"] == "medium" and second.json()["topics"] == [topics[0]]
        kinds = [e["kind"] for e in c.get(f"/v1/cases/{case_id}/history", headers=H_REVIEWER).json()["events"]]
        assert kinds == ["created", "correction", "correction"]

        bad = c.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER,
                     json={"reviewer": "r", "reason": "x", "topics": ["ไม่มีหัวข้อนี้"]})
        assert bad.status_code == 422 and "ไม่มีหัวข้อนี้" in bad.json()["error"]
        assert topics[0] in bad.json()["detail"]["allowed"]
        bad = c.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER,
                     json={"reviewer": "r", "reason": "x", "urgency": "urgent!"})
        assert bad.status_code == 422 and "high, medium, low" in bad.json()["error"]
        empty = c.post(f"/v1/cases/{case_id}/corrections", headers=H_REVIEWER, json={"reviewer": "r", "reason": "x"})
        assert empty.status_code == 422 and "at least one of" in empty.json()["error"]
        assert c.post("/v1/cases/999/corrections", headers=H_REVIEWER,
                      json={"reviewer": "r", "reason": "x", "urgency": "low"}).status_code == 404
        assert c.post(f"/v1/cases/{case_id}/corrections", headers=H_INTAKE,
                      json={"reviewer": "r", "reason": "x", "urgency": "low"}).status_code == 403


def test_agency_corrected_before_sends_similar_cases_to_review(tmp_path, small_model_dir, db_url):
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, review_threshold=0.0,
                                                         database_url=db_url))) as c:
        text = "ขยะไม่มีคนมาเก็บสามวันแล้ว ส่งกลิ่นเหม็น"
        first = _triage(c, text, district="บางรัก")
        assert "agency_corrected_before" not in first["review_reasons"]
        c.post(f"/v1/cases/{first['case_id']}/corrections", headers=H_REVIEWER,
               json={"reviewer": "r", "reason": "wrong office", "agencies": ["สำนักสิ่งแวดล้อม กทม."]})
        # the same complaint again (no external_id: a new case) gets the same topic and agency for sure
        again = _triage(c, text, district="บางรัก")
        assert again["case_id"] != first["case_id"]
        assert (again["topics"][0], again["agencies"][0]) == (first["topics"][0], first["agencies"][0])
        assert "agency_corrected_before" in again["review_reasons"] and again["needs_review"]


def test_status_workflow_history_and_loops(client):
    case_id = _triage(client, TEXTS[1], district="บางรัก")["case_id"]
    start_agency = client.get(f"/v1/cases/{case_id}", headers=H_REVIEWER).json()["agency"]

    def step(**body):
        return client.post(f"/v1/cases/{case_id}/status", json={"actor": "staff-1", **body}, headers=H_REVIEWER)

    assert step(status="resolved").status_code == 409  # new cannot be resolved unseen
    assert step(status="assigned").status_code == 200
    assert step(status="in_progress").status_code == 200
    r = step(status="forwarded", agency="การไฟฟ้านครหลวง เขตคลองเตย", note="สายไฟ ไม่ใช่ถนน")
    assert r.status_code == 200 and r.json()["agency"] == "การไฟฟ้านครหลวง เขตคลองเตย"
    loop = step(status="forwarded", agency=start_agency)
    assert loop.status_code == 409 and "loop" in loop.json()["error"]
    assert step(status="forwarded").status_code == 422
    r = step(status="escalated")
    assert r.status_code == 200 and r.json()["agency"].startswith("ศูนย์ดำรงธรรม")
    assert step(status="escalated").status_code == 409
    assert step(status="resolved", note="ซ่อมแล้ว").status_code == 200
    closed = step(status="in_progress")
    assert closed.status_code == 409 and "closed" in closed.json()["error"]
    assert step(status="teleported").status_code == 422
    hist = client.get(f"/v1/cases/{case_id}/history", headers=H_REVIEWER).json()
    assert [e["to_status"] for e in hist["events"]] == ["new", "assigned", "in_progress", "forwarded", "escalated",
                                                        "resolved"]
    assert hist["status"] == "resolved" and hist["events"][3]["note"] == "สายไฟ ไม่ใช่ถนน"
    assert client.get("/v1/cases/777/history", headers=H_REVIEWER).status_code == 404
    assert client.post("/v1/cases/777/status", json={"actor": "a", "status": "assigned"},
                       headers=H_REVIEWER).status_code == 404


def test_urgent_case_leaves_the_queue_when_accepted(tmp_path, small_model_dir, db_url):
    settings = settings_for(tmp_path, small_model_dir, review_threshold=0.0, database_url=db_url)
    with TestClient(create_app(settings)) as c:
        # a fixed urgent case, written to the same SQLite file the app serves (not the model's guess)
        store = open_store(settings.database)
        try:
            (case, _), = store.create_cases([{
                "text": "สายไฟช็อตไฟไหม้ มีคนติดอยู่ในบ้าน ช่วยด่วน", "masked_text": "สายไฟช็อตไฟไหม้", "district": "บางรัก",
                "source": None, "external_id": None, "reporter_contact": None, "model_version": "fixed",
                "prediction": {"topics": ["ไฟฟ้า"], "topic_scores": {"ไฟฟ้า": 0.9}, "urgency": "high"},
                "topics": ["ไฟฟ้า"], "urgency": "high", "urgency_rank": 0, "agencies": [], "needs_review": True,
                "review_reasons": ["urgent_not_accepted"]}])
        finally:
            store.close()
        queue = c.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]
        assert case["id"] in [q["id"] for q in queue]
        r = c.post(f"/v1/cases/{case['id']}/status", json={"actor": "s", "status": "assigned"}, headers=H_REVIEWER)
        assert r.status_code == 200
        after = c.get(f"/v1/cases/{case['id']}", headers=H_REVIEWER).json()
        assert "urgent_not_accepted" not in after["review_reasons"] and not after["needs_review"]
        assert case["id"] not in [q["id"] for q in c.get("/v1/review/queue", headers=H_REVIEWER).json()["items"]]


def test_model_info_and_reload(client):
    info = client.get("/v1/model", headers=H_INTAKE).json()
    assert info["labels"]["urgency"] == ["high", "medium", "low"] and info["labels"]["topic"]
    assert "micro_f1" in info["metrics"]["topic"]
    r = client.post("/v1/admin/reload", headers=H_ADMIN)
    assert r.status_code == 200 and r.json()["version"] == info["version"]


def test_reload_of_a_broken_model_keeps_serving_the_old_one(tmp_path, small_model_dir, db_url):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(small_model_dir, models, symlinks=True)
    with TestClient(create_app(settings_for(tmp_path, models, database_url=db_url)), raise_server_exceptions=False) as c:
        version = c.get("/v1/model", headers=H_ADMIN).json()["version"]
        (models / "current" / "model.joblib").write_bytes(b"garbage")
        r = c.post("/v1/admin/reload", headers=H_ADMIN)
        assert r.status_code == 503 and "corrupt" in r.json()["error"]
        assert c.get("/v1/model", headers=H_ADMIN).json()["version"] == version
        assert c.post("/v1/triage", json={"text": TEXTS[0]}, headers=H_INTAKE).status_code == 201


def test_dev_mode_needs_no_key(tmp_path, small_model_dir, caplog):
    with TestClient(create_app(settings_for(tmp_path, small_model_dir, api_keys="", dev_mode=True))) as c:
        assert c.post("/v1/triage", json={"text": TEXTS[0]}).status_code == 201
    assert "DEVELOPMENT MODE" in caplog.text


def test_settings_fail_fast(tmp_path, small_model_dir):
    from pydantic import ValidationError

    from triage.errors import ConfigError

    with pytest.raises(ConfigError, match="TRIAGE_API_KEYS"):
        create_app(settings_for(tmp_path, small_model_dir, api_keys=""))
    with pytest.raises(ValidationError, match="not one of"):
        settings_for(tmp_path, small_model_dir, api_keys="abcdefghij:superuser")
    with pytest.raises(ValidationError, match="at least 8"):
        settings_for(tmp_path, small_model_dir, api_keys="abc:admin")


def test_settings_from_environment(monkeypatch, tmp_path):
    from triage.config import Settings

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRIAGE_API_KEYS", "k-intake-1:intake, k-admin-22:admin")
    s = Settings()
    assert s.keys == {"k-intake-1": "intake", "k-admin-22": "admin"}
    assert s.database == f"sqlite:///{tmp_path / 'triage.db'}"


def test_allowed_agencies_come_from_the_router_directory():
    allowed = allowed_agencies(Router.load())
    assert allowed is not None and "สำนักงานเขตบางรัก" in allowed and "ไม่มีหน่วยงานนี้" not in allowed

    class WithoutDirectory:
        pass

    assert allowed_agencies(WithoutDirectory()) is None


def test_raw_text_and_contact_never_reach_the_log(client, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    secret = "นายสมชาย ใจดี บ้านเลขที่ 99/1 ไฟฟ้าดับทั้งซอย"
    out = _triage(client, secret, reporter_contact="somchai@example.com", external_id="log-1")
    client.post(f"/v1/cases/{out['case_id']}/corrections", headers=H_REVIEWER,
                json={"reviewer": "r", "reason": "x", "urgency": "low"})
    client.post("/v1/triage", json={"text": "ก" * 20_000}, headers=H_INTAKE)
    assert f"case {out['case_id']}" in caplog.text
    for fragment in ("สมชาย", "99/1", "somchai", "ไฟฟ้าดับทั้งซอย"):
        assert fragment not in caplog.text


def test_agencies_multi_and_unsure_cases_show_candidates_in_the_queue(client):
    both = _triage(client, "น้ำท่วมถนนสูง เสาไฟฟ้าล้มขวางถนน สายไฟขาด", district="บางเขน")
    assert "การไฟฟ้านครหลวง เขตบางเขน" in both["agencies"] and len(both["agencies"]) >= 2
    assert set(both["agency_scores"]) >= set(both["agencies"]) and "table" in both["agency_explanation"]
    vague = _triage(client, "มีปัญหาครับ")
    assert vague["needs_review"] and vague["agency_candidates"]
    queue = client.get("/v1/review/queue", params={"limit": 100}, headers=H_REVIEWER).json()["items"]
    item = next(x for x in queue if x["id"] == vague["case_id"])
    assert item["prediction"]["agency_candidates"][0]["agency"] == vague["agency_candidates"][0]["agency"]


def test_a_nul_character_is_never_a_500_and_loses_no_other_case(client, db_url):
    """A NUL in the text over HTTP, through the fast path and the batch route: SQLite keeps it, PostgreSQL
    refuses it with a clear 422 (the one difference between the backends) and stores nothing half-way."""
    r = client.post("/v1/triage", json={"text": "ไฟดับ\u0000ทั้งซอย", "external_id": "nul-1"}, headers=H_INTAKE)
    if db_url.startswith("postgresql"):
        assert r.status_code == 422 and "NUL" in r.json()["error"], r.text
    else:
        assert r.status_code == 201, r.text
    r = client.post("/v1/triage/batch", json={"items": [{"text": "ถนนพัง\u0000"}, {"text": TEXTS[1]}]},
                    headers=H_INTAKE)
    listed = client.get("/v1/cases", headers=H_REVIEWER).json()["items"]
    if db_url.startswith("postgresql"):  # the whole batch refused, clearly, and nothing half-stored
        assert r.status_code == 422 and "NUL" in r.json()["error"], r.text
        assert listed == []
    else:
        assert r.status_code == 200 and [x["created"] for x in r.json()["results"]] == [True, True], r.text
        assert len(listed) == 3
