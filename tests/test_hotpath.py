"""POST /v1/triage's fast path (``triage.hotpath``) over real HTTP: the same answers as the full app.

A content type of ``application/merge-patch+json`` is JSON to FastAPI but not plainly
``application/json``, so the fast path hands that request to the full app: the pair gives the
same request through both paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from api_helpers import H_INTAKE, H_REVIEWER, INTAKE, TEXTS, Server, settings_for
from fastapi.testclient import TestClient

from triage.app import create_app

pytestmark = pytest.mark.server

FULL_APP = "application/merge-patch+json"
VOLATILE = ("case_id", "external_id", "tracking_code")
VOLATILE_HEADERS = ("date", "content-length")  # the case ids differ in length


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("hotpath") / "data", small_model_dir)
    yield srv
    srv.stop()


def post(c: httpx.Client, body: bytes, content_type: str, key: str | None = INTAKE) -> httpx.Response:
    headers = {"content-type": content_type, **({"X-API-Key": key} if key is not None else {})}
    return c.post("/v1/triage", content=body, headers=headers)


def same_answer(fast: httpx.Response, full: httpx.Response) -> None:
    assert fast.status_code == full.status_code
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert [(k, v) for k, v in fast.headers.items() if k not in VOLATILE_HEADERS] == \
        [(k, v) for k, v in full.headers.items() if k not in VOLATILE_HEADERS]
    a, b = fast.json(), full.json()
    if isinstance(a, dict) and "case_id" in a:
        for key in VOLATILE:
            a.pop(key), b.pop(key)
    assert a == b


def test_a_plain_request_gets_the_full_apps_answer_headers_and_bytes(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for i, text in enumerate(TEXTS):
            body = {"text": text, "district": "บางรัก", "source": "line"}
            fast = post(c, orjson.dumps({**body, "external_id": f"fast-{i}"}), "application/json")
            full = post(c, orjson.dumps({**body, "external_id": f"full-{i}"}), FULL_APP)
            assert fast.status_code == 201 and fast.headers["cache-control"] == "no-store"
            assert "\\u" not in fast.text and text in c.get(f"/v1/cases/{fast.json()['case_id']}",
                                                             headers=H_REVIEWER).text
            same_answer(fast, full)
            again = post(c, orjson.dumps({**body, "external_id": f"fast-{i}"}), "application/json")
            assert again.status_code == 200 and again.json()["case_id"] == fast.json()["case_id"]


@pytest.mark.parametrize("body, key", [
    (b'{"text": "   "}', INTAKE),  # nothing to triage: 422 from check_text
    (b'{"text": "\xe0\xb8\x96\xe0\xb8\x99\xe0\xb8\x99", "extra": 1}', INTAKE),  # a field the model forbids
    (b'{"text": 5}', INTAKE),
    (b'[1, 2]', INTAKE),
    (b'{"text": ', INTAKE),  # not JSON: 400
    (b'{"text": "NaN ok", "district": NaN}', INTAKE),  # Python's json reads NaN, orjson does not
    (b'{"text": "\\ud800 lone surrogate"}', INTAKE),
    (b'{"text": "' + "ก".encode() * 20_000 + b'"}', INTAKE),  # over TRIAGE_MAX_TEXT_CHARS: 413
    (b'{"text": "ok text"}', None),  # no key: 401
    (b'{"text": "ok text"}', "wrong-key"),  # unknown key: 401, counted
    (b'{"text": "ok text"}', H_REVIEWER["X-API-Key"]),  # a key without the triage permission: 403
])
def test_every_refusal_is_the_full_apps_own(server, body, key):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        fast, full = post(c, body, "application/json", key), post(c, body, FULL_APP, key)
    assert fast.status_code >= 400
    same_answer(fast, full)


def test_a_conflicting_external_id_is_answered_by_the_apps_handler(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert post(c, orjson.dumps({"text": TEXTS[0], "external_id": "conflict-1"}), "application/json").status_code == 201
        fast = post(c, orjson.dumps({"text": TEXTS[1], "external_id": "conflict-1"}), "application/json")
        full = post(c, orjson.dumps({"text": TEXTS[1], "external_id": "conflict-1"}), FULL_APP)
    assert fast.status_code == 409 and "conflict-1" in fast.json()["error"]
    same_answer(fast, full)


def test_other_routes_and_methods_are_untouched(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/v1/triage", headers=H_INTAKE).status_code == 405
        assert c.get("/healthz").json() == {"status": "ok"}
        batch = c.post("/v1/triage/batch", json={"items": [{"text": TEXTS[2]}]}, headers=H_INTAKE)
        assert batch.status_code == 200 and batch.headers["cache-control"] == "no-store"


def test_plain_requests_are_answered_by_the_fast_path_and_the_others_by_the_full_app(tmp_path, small_model_dir):
    """In process, to read the middleware's count: which path answered which request."""
    app = create_app(settings_for(tmp_path, small_model_dir))
    with TestClient(app) as c:
        assert post(c, orjson.dumps({"text": TEXTS[0]}), "application/json").status_code == 201
        assert post(c, orjson.dumps({"text": TEXTS[1]}), "application/json; charset=utf-8").status_code == 201
        assert app.state.fast_path.answered == 2
        assert post(c, orjson.dumps({"text": TEXTS[2]}), FULL_APP).status_code == 201
        assert post(c, b'{"text": ', "application/json").status_code == 400
        assert post(c, orjson.dumps({"text": TEXTS[3]}), "application/json", key=None).status_code == 401
        assert app.state.fast_path.answered == 2


def test_the_answer_is_the_stored_case_read_back_from_the_database_file(tmp_path, small_model_dir):
    """The store hands back a new case without parsing its JSON columns again (``SQLiteStore._written``):
    the answer must still be byte for byte what the case read back from the SQLite file gives."""
    from triage.api import triage_json

    app = create_app(settings_for(tmp_path, small_model_dir))
    with TestClient(app) as c:
        for i, text in enumerate(TEXTS):
            body = {"text": text + " นายสมชาย ใจดี โทร 081-234-5678", "district": "บางรัก",
                    "external_id": f"back-{i}" if i % 2 else None}
            answer = post(c, orjson.dumps(body), "application/json")
            assert answer.status_code == 201
            stored = app.state.store.get_case(answer.json()["case_id"])
            assert answer.content == triage_json(stored, True)
        assert app.state.fast_path.answered == len(TEXTS)
