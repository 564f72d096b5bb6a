"""Issue 13 against a real ``serve.py`` on a loopback port: request header limits, throttled and
logged key failures, no-store caching and the data folder's file modes, as a client and an
operator see them."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import H_INTAKE, H_REVIEWER, TEXTS, Server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path) -> Iterator[Server]:
    old = os.umask(0o022)
    try:
        srv = Server(tmp_path_factory.mktemp("sec") / "data", small_model_dir, TRIAGE_LOG_LEVEL="info")
    finally:
        os.umask(old)
    yield srv
    srv.stop()


def raw_request(port: int, head: bytes, chunk: int = 65536) -> bytes:
    """Send a request head (possibly huge) on a fresh connection; return what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            for i in range(0, len(head), chunk):
                s.sendall(head[i : i + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: that is the point
        answer = b""
        try:
            while True:
                part = s.recv(65536)
                if not part:
                    break
                answer += part
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def test_huge_request_headers_are_refused(server):
    base = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    ok = raw_request(server.port, base + b"X-Pad: " + b"a" * 4000 + b"\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]
    for size in (100_000, 10_000_000):
        answer = raw_request(server.port, base + b"X-Pad: " + b"a" * size + b"\r\nConnection: close\r\n\r\n")
        assert not answer.startswith(b"HTTP/1.1 200"), (size, answer[:200])
        assert answer == b"" or answer.split(b" ")[1] in (b"400", b"413", b"431"), answer[:200]
    many = b"".join(f"X-H{i}: {'b' * 100}\r\n".encode() for i in range(1000))  # 100 KB in many headers
    answer = raw_request(server.port, base + many + b"Connection: close\r\n\r\n")
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_failed_keys_are_throttled_and_logged_without_the_key(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        wrong = [f"guess-{i:04d}-secret-value" for i in range(25)]
        codes = [c.get("/v1/review/queue", headers={"X-API-Key": k}).status_code for k in wrong]
        assert codes[0] == 401 and codes[-1] == 429
        r = c.get("/v1/review/queue", headers=H_REVIEWER)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    log = Path(server.log.name).read_text(encoding="utf-8")
    assert "refused" in log and "127.0.0.1" in log
    for k in wrong:
        assert k not in log


def test_api_answers_with_cases_are_no_store_and_files_are_private(server):
    # another client address: the throttled one above is locked out for a while
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-Forwarded-For": "127.0.0.9"}) as c:
        out = c.post("/v1/triage", json={"text": TEXTS[0], "reporter_contact": "081-111-2222"}, headers=H_INTAKE)
        assert out.status_code == 201 and out.headers["cache-control"] == "no-store"
        case = c.get(f"/v1/cases/{out.json()['case_id']}", headers=H_REVIEWER)
        assert case.status_code == 200 and case.headers["cache-control"] == "no-store"
        model = c.get("/v1/model", headers=H_REVIEWER)
        assert model.status_code == 200 and "path" not in model.json()
    folder = Path(server.log.name).parent / "data"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in ("triage.db", "triage.db-wal", "triage.db-shm"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600, name
