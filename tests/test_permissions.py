"""Every role against every endpoint of the API and the review pages, from one permission table.

``EXPECTED`` (test_auth.py) is the specification (README, "The service"), written out independently
of ``triage.auth.PERMISSIONS``, so that giving a role more than it should have, or putting the wrong
permission on a route, fails here. Every route of the app must appear in ``ENDPOINTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN, INTAKE, KEYS, REVIEWER, TEXTS, settings_for
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from test_auth import EXPECTED

from triage.app import create_app

AGENCY = "agency-key-dusit-01"
AGENCY_NAME = "สำนักงานเขตดุสิต"
CALLERS = {"none": None, "unknown": "not-a-configured-key", "intake": INTAKE, "reviewer": REVIEWER, "admin": ADMIN,
           "agency": AGENCY}

Body = Callable[[dict[str, Any]], dict[str, Any]]


def _json(body: dict[str, Any]) -> Body:
    return lambda _case: {"json": body}


def _form(make: Callable[[dict[str, Any]], dict[str, str]]) -> Body:
    return lambda case: {"data": make(case)}


# method, path ({id}: a fresh case), permission (None: public), request body, status when allowed
ENDPOINTS: list[tuple[str, str, str | None, Body | None, int]] = [
    ("POST", "/v1/triage", "triage", _json({"text": TEXTS[2]}), 201),
    ("POST", "/v1/triage/batch", "triage", _json({"items": [{"text": TEXTS[3]}]}), 200),
    ("GET", "/v1/cases/{id}", "read", None, 200),
    ("GET", "/v1/cases", "read", None, 200),
    ("GET", "/v1/review/queue", "read", None, 200),
    ("POST", "/v1/cases/{id}/corrections", "correct",
     _json({"reviewer": "r", "reason": "test", "urgency": "low"}), 200),
    ("POST", "/v1/cases/{id}/status", "status", _json({"actor": "a", "status": "assigned"}), 200),
    ("GET", "/v1/cases/{id}/history", "read", None, 200),
    ("GET", "/v1/model", "model", None, 200),
    ("POST", "/v1/admin/reload", "admin", None, 200),
    ("GET", "/healthz", None, None, 200),
    ("GET", "/readyz", None, None, 200),
    # review pages: a reviewer's key in X-API-Key (scripts) or a session cookie (browsers)
    ("GET", "/review", "review", None, 200),
    ("GET", "/review/overview", "review", None, 200),
    ("GET", "/review/cases/{id}", "review", None, 200),
    ("POST", "/review/cases/{id}/correct", "correct",
     _form(lambda c: {"topics": c["topics"][0], "urgency": "low", "reason": "test", "version": c["updated_at"]}), 303),
    ("POST", "/review/cases/{id}/status", "status",
     _form(lambda c: {"status": "assigned", "version": c["updated_at"]}), 303),
    ("POST", "/review/cases/{id}/accept", "correct", _form(lambda c: {"version": c["updated_at"]}), 303),
    ("POST", "/review/logout", "review", _form(lambda c: {}), 303),
    ("GET", "/review/static/review.css", None, None, 200),
    # the complainant's tracking: no key, the tracking code is the key (a fresh case is not resolved: 409)
    ("GET", "/v1/track/{code}", None, None, 200),
    ("POST", "/v1/track/{code}/feedback", None, _json({"stars": 4}), 409),
    ("GET", "/track/{code}", None, None, 200),
    ("POST", "/track/{code}/feedback", None, _form(lambda c: {"stars": "4"}), 409),
    ("GET", "/track/static/track.css", None, None, 200),
]
# An agency key (issue 10) has read, status and model, but only for its own agency's cases: a fresh
# case (no district) is not at สำนักงานเขตดุสิต, so reading or moving it is a 404; the review pages
# and the review queue are for reviewers only.
AGENCY_GETS: dict[tuple[str, str], int] = {
    ("GET", "/v1/cases/{id}"): 404, ("GET", "/v1/cases"): 200, ("GET", "/v1/review/queue"): 403,
    ("POST", "/v1/cases/{id}/status"): 404, ("GET", "/v1/cases/{id}/history"): 404, ("GET", "/v1/model"): 200,
}
# public (a logged-in reviewer is sent on from the login form); tested in test_review_pages
UNLISTED_OK = {("GET", "/review/login"), ("POST", "/review/login"), ("GET", "/review/static/{name}")}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path):
    settings = settings_for(tmp_path_factory.mktemp("perm"), small_model_dir, track_burst=100_000,
                            api_keys=f"{KEYS},{AGENCY}:agency:{AGENCY_NAME}")
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def test_every_route_is_in_the_table(client):
    listed = {(m, p.replace("{id}", "{case_id}")) for m, p, *_ in ENDPOINTS}
    assert set(AGENCY_GETS) <= {(m, p) for m, p, *_ in ENDPOINTS}
    routes = set()
    for route in client.app.routes:
        if isinstance(route, APIRoute):
            routes.update((m, route.path) for m in route.methods)
    public_docs = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}
    missing = {r for r in routes if r not in listed and r not in UNLISTED_OK and r not in public_docs}
    assert not missing, f"routes without a row in ENDPOINTS: {sorted(missing)}"


def _fresh_case(client: TestClient, i: int) -> dict[str, Any]:
    r = client.post("/v1/triage", json={"text": TEXTS[i % len(TEXTS)]}, headers={"X-API-Key": ADMIN})
    assert r.status_code == 201, r.text
    case = client.get(f"/v1/cases/{r.json()['case_id']}", headers={"X-API-Key": ADMIN}).json()
    return case


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("method", "path", "permission", "body", "ok"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_each_caller_gets_exactly_what_its_role_allows(client, caller, method, path, permission, body, ok):
    case = _fresh_case(client, len(caller) + len(path))
    url = path.replace("{id}", str(case["id"])).replace("{code}", case["tracking_code"])
    key = CALLERS[caller]
    headers = {"X-API-Key": key} if key is not None else {}
    r = client.request(method, url, headers=headers, **(body(case) if body else {}))
    if permission is None:
        assert r.status_code == ok, r.text
        return
    if caller == "none":
        # the API says 401; a review page sends a browser to its login form instead
        expected = 303 if path.startswith("/review") else 401
        assert r.status_code == expected, r.text
        if expected == 303:
            assert "/review/login" in r.headers["location"]
    elif caller == "unknown":
        assert r.status_code == 401, r.text
    elif caller == "agency":
        assert r.status_code == AGENCY_GETS.get((method, path), 403), r.text
    elif permission in EXPECTED[caller]:
        assert r.status_code == ok, r.text
        if method == "POST" and path.startswith("/review/cases"):
            assert "msg=conflict" not in r.headers["location"]  # the step was taken, not refused as stale
    else:
        assert r.status_code == 403, r.text
    if r.status_code in (401, 403) and method == "POST" and "{id}" in path:
        after = client.get(f"/v1/cases/{case['id']}", headers={"X-API-Key": ADMIN}).json()
        assert after["updated_at"] == case["updated_at"], "a refused caller changed the case"


@pytest.mark.parametrize("caller", ["intake", "reviewer"])
def test_only_admins_see_reporter_contact(client, caller):
    r = client.post("/v1/triage", json={"text": TEXTS[5], "reporter_contact": "081-000-0000"},
                    headers={"X-API-Key": ADMIN})
    case_id = r.json()["case_id"]
    admin_view = client.get(f"/v1/cases/{case_id}", headers={"X-API-Key": ADMIN}).json()
    assert admin_view["reporter_contact"] == "081-000-0000"
    if caller == "reviewer":
        view = client.get(f"/v1/cases/{case_id}", headers={"X-API-Key": REVIEWER}).json()
        assert view["reporter_contact"] is None and view["text"] == TEXTS[5]
    else:
        assert client.get(f"/v1/cases/{case_id}", headers={"X-API-Key": INTAKE}).status_code == 403
