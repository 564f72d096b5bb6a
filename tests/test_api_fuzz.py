"""Fuzzing the API from its own OpenAPI schema (hypothesis): any request gets a clean answer, never a 500.

Each operation gets bodies, path and query values drawn from its schema, and as often values
that break it (any JSON, raw bytes, lone surrogates); every answer must be JSON with a status
under 500.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from api_helpers import H_ADMIN, settings_for
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage.app import create_app

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=10)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path):
    database = {}
    if request.param == "postgresql":  # any text, any bytes: never a 500 from the PostgreSQL store either
        cluster, template = request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template")
        database["database_url"] = cluster.create_database("fuzz", template=template)
    # a third of the fuzzed requests send a wrong key: throttling (test_security.py) would lock the client out
    app = create_app(settings_for(tmp_path_factory.mktemp("fuzz"), small_model_dir, max_text_chars=500,
                                  key_failures=100_000, **database))
    with TestClient(app, raise_server_exceptions=False) as c:
        for text in ("ไฟฟ้าดับทั้งซอย", "ถนนเป็นหลุม"):  # a few cases for the id-taking endpoints
            c.post("/v1/triage", json={"text": text}, headers=H_ADMIN)
        yield c


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for values that (mostly) fit a JSON schema; a small stand-in for hypothesis-jsonschema."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, components, depth) for s in schema[key]])
    kind = schema.get("type")
    if kind == "string":
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 60), 60))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**70)), schema.get("maximum", 2**70))
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), components, depth + 1) if depth < 3 else JSON
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object" and "properties" in schema and depth < 3:
        props = {k: from_schema(v, components, depth + 1) for k, v in schema["properties"].items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                     optional={k: v for k, v in props.items() if k not in required})
    return JSON


def operations() -> list[tuple[str, str]]:
    # the routes are fixed by the code, so they are listed without building an app at collection time
    return [("post", "/v1/triage"), ("post", "/v1/triage/batch"), ("get", "/v1/cases/{case_id}"),
            ("get", "/v1/cases"), ("get", "/v1/review/queue"), ("post", "/v1/cases/{case_id}/corrections"),
            ("post", "/v1/cases/{case_id}/status"), ("get", "/v1/cases/{case_id}/history"), ("get", "/v1/model"),
            ("post", "/v1/admin/reload"), ("get", "/healthz"), ("get", "/readyz"),
            ("get", "/v1/track/{code}"), ("post", "/v1/track/{code}/feedback")]


def test_every_operation_is_fuzzed(client):
    paths = client.get("/openapi.json").json()["paths"]
    listed = {(m, p) for p, ops in paths.items() for m in ops}
    assert listed == set(operations())


def _check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    json.loads(response.text)


@pytest.mark.parametrize("method,path", operations())
def test_schema_driven_requests_never_500(client, method, path):
    spec = client.get("/openapi.json").json()
    op, components = spec["paths"][path][method], spec.get("components", {}).get("schemas", {})
    params = op.get("parameters", [])
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    path_params = {p["name"]: st.one_of(from_schema(p["schema"], components), st.integers(1, 3),
                                        st.text(min_size=1, max_size=20))
                   for p in params if p["in"] == "path"}
    query = {p["name"]: st.one_of(from_schema(p["schema"], components), st.text(max_size=20))
             for p in params if p["in"] == "query"}
    body = st.one_of(from_schema(body_schema, components), JSON) if body_schema else st.none()

    @SETTINGS
    @given(st.fixed_dictionaries(path_params), st.fixed_dictionaries({}, optional=query), body,
           st.sampled_from([H_ADMIN, {}, {"X-API-Key": "nope"}]))
    def run(path_values, query_values, body_value, headers):
        url = path
        for name, value in path_values.items():
            url = url.replace("{" + name + "}", quote(str(value), safe=""))
        kwargs: dict[str, Any] = {"params": {k: v if isinstance(v, str) else json.dumps(v)
                                             for k, v in query_values.items() if v is not None},
                                  "headers": headers}
        if body_schema:
            kwargs["content"] = json.dumps(body_value)
            kwargs["headers"] = {**headers, "content-type": "application/json"}
        _check(client.request(method.upper(), url, **kwargs))

    run()


@pytest.mark.parametrize("path", ["/v1/triage", "/v1/triage/batch", "/v1/cases/1/corrections", "/v1/cases/1/status"])
def test_raw_bytes_and_broken_unicode_never_500(client, path):
    @SETTINGS
    @given(st.one_of(st.binary(max_size=200),
                     st.text(max_size=50).map(lambda t: ('{"text": "' + t.replace('"', "") + '\\ud800"}').encode()),
                     st.text(max_size=50).map(lambda t: t.encode("utf-8"))))
    def run(raw):
        _check(client.post(path, content=raw, headers={**H_ADMIN, "content-type": "application/json"}))

    run()


@SETTINGS
@given(st.text(max_size=600))
def test_any_unicode_text_gets_a_triage_or_a_clean_4xx(client, text):
    r = client.post("/v1/triage", json={"text": text}, headers=H_ADMIN)
    assert r.status_code in (201, 413, 422), r.text[:300]
    if r.status_code == 201:
        assert r.json()["topics"]
