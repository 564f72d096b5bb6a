"""A real ``serve.py`` with two worker processes on a real SQLite data folder (issue 9: one worker per
core by default): the throttling limits hold across the workers, review sessions work whichever
worker answers, a newly promoted model reaches both, and ``kill -9`` of serve.py ends its workers.

Each worker is reached on a keep-alive connection of its own: a client with one connection keeps
talking to the process that accepted it, which ``/v1/model``'s ``loaded_at`` (each worker loads the
model at its own moment) tells apart. Every request is checked to have gone over that connection.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import H_ADMIN, H_INTAKE, REVIEWER, TEXTS, Server
from test_review_pages import csrf_of

from triage import registry
from triage.config import Settings, default_workers


class Pinned:
    """An httpx client on one keep-alive connection, so on one worker process."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60,
                                   limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        first = self.client.get("/v1/model", headers=H_ADMIN)
        self.worker = first.json()["loaded_at"]
        self.port = _local_port(first)

    def request(self, method: str, path: str, **kw: object) -> httpx.Response:
        r = self.client.request(method, path, **kw)  # type: ignore[arg-type]
        assert _local_port(r) == self.port, "the connection changed: this may be another worker"
        return r

    def close(self) -> None:
        self.client.close()


def _local_port(r: httpx.Response) -> int:
    return int(r.extensions["network_stream"].get_extra_info("client_addr")[1])


def one_on_each_worker(url: str) -> tuple[Pinned, Pinned]:
    """Two pinned clients that reached different worker processes, both connections still open (a
    connection idle for uvicorn's 5 s keep-alive timeout is closed: then the search starts again)."""
    deadline = time.monotonic() + 60
    while True:
        seen: dict[str, Pinned] = {}
        while len(seen) < 2:
            assert time.monotonic() < deadline, "new connections never reached the second worker"
            p = Pinned(url)
            if p.worker in seen:
                p.close()
            else:
                seen[p.worker] = p
        a, b = seen.values()
        probes = [c.client.get("/v1/model", headers=H_ADMIN) for c in (a, b)]
        if all(_local_port(r) == c.port and r.json()["loaded_at"] == c.worker for r, c in zip(probes, (a, b))):
            return a, b
        a.close()
        b.close()


@pytest.fixture()
def two_workers(tmp_path: Path, small_model_dir: Path) -> Iterator[Server]:
    models = tmp_path / "models"
    shutil.copytree(small_model_dir, models, symlinks=True)  # a copy: this test promotes a model into it
    srv = Server(tmp_path / "data", models, workers=2, TRIAGE_KEY_FAILURES="6", TRIAGE_LOGIN_FAILURES="4",
                 TRIAGE_TRACK_BURST="5", TRIAGE_TRACK_RATE_PER_MINUTE="0.01")
    try:
        yield srv
    finally:
        srv.stop()


def test_limits_hold_across_two_workers(two_workers: Server):
    """Wrong keys, failed logins and tracking lookups sent alternately to the two workers: together
    they get what one process allowed (6, 4, 5), then both refuse; with counters per process each
    worker would have allowed its own 6, 4 and 5."""
    a, b = one_on_each_worker(two_workers.url)
    try:
        codes = [(a, b)[i % 2].request("GET", "/v1/track/AAAABBBBCCCCDDDDEEEE").status_code for i in range(8)]
        assert codes == [404] * 5 + [429] * 3  # an unknown code: 404 until the client's 5 lookups are used
        for c in (a, b):
            login_page = c.request("GET", "/review/login")
            assert login_page.status_code == 200
        statuses = []
        for i in range(6):
            c = (a, b)[i % 2]
            page = c.request("GET", "/review/login")
            r = c.request("POST", "/review/login", data={"csrf": csrf_of(page.text), "key": f"wrong-{i}-0000000",
                                                         "name": "x"}, follow_redirects=False)
            statuses.append(r.status_code)
        assert statuses == [401] * 4 + [429] * 2
        statuses = [(a, b)[i % 2].request("GET", "/v1/cases", headers={"X-API-Key": f"wrong-key-{i:04d}"}).status_code
                    for i in range(9)]
        assert statuses == [401] * 6 + [429] * 3
        for c in (a, b):  # the right key too, on both workers, the triage hot path included
            r = c.request("POST", "/v1/triage", json={"text": TEXTS[0]}, headers=H_INTAKE)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert c.request("GET", "/v1/cases", headers=H_ADMIN).status_code == 429
    finally:
        a.close()
        b.close()


def test_review_sessions_and_a_promoted_model_reach_both_workers(two_workers: Server, tmp_path: Path):
    # a newly promoted model: a new version folder and `current` pointed at it (saved first, while no
    # connection is held: the workers go on serving the old one until a reload is asked for)
    models = tmp_path / "models"
    model, meta = registry.load(models / "current")
    model.version = "promoted-in-test"
    registry.save(model, meta, models, "promoted-in-test")
    a, b = one_on_each_worker(two_workers.url)
    try:
        case_id = a.request("POST", "/v1/triage", json={"text": TEXTS[2]}, headers=H_INTAKE).json()["case_id"]
        page = a.request("GET", "/review/login")
        r = a.request("POST", "/review/login", data={"csrf": csrf_of(page.text), "key": REVIEWER, "name": "สมศรี"},
                      follow_redirects=False)
        assert r.status_code == 303
        b.client.cookies.update(a.client.cookies)  # the same browser, its next request answered by the other worker
        for c in (a, b):
            r = c.request("GET", f"/review/cases/{case_id}", follow_redirects=False)
            assert r.status_code == 200 and "สมศรี" in r.text
        page = b.request("GET", f"/review/cases/{case_id}")
        r = b.request("POST", "/review/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert r.status_code == 303
        r = a.request("GET", f"/review/cases/{case_id}", follow_redirects=False)  # logged out in every worker
        assert r.status_code == 303 and "/review/login" in r.headers["location"]

        assert a.request("POST", "/v1/triage", json={"text": TEXTS[1]}, headers=H_INTAKE).json()["model_version"] \
            != "promoted-in-test"  # not before the reload
        # the reload asked of one worker; the other follows
        assert a.request("POST", "/v1/admin/reload", headers=H_ADMIN).json()["version"] == "promoted-in-test"
        deadline = time.monotonic() + 60
        while b.request("GET", "/v1/model", headers=H_ADMIN).json()["version"] != "promoted-in-test":
            assert time.monotonic() < deadline, "the other worker did not load the promoted model"
            time.sleep(0.3)
        for c in (a, b):
            r = c.request("POST", "/v1/triage", json={"text": TEXTS[3]}, headers=H_INTAKE)
            assert r.status_code == 201 and r.json()["model_version"] == "promoted-in-test"
    finally:
        a.close()
        b.close()


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat_file.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_default_workers_are_one_per_core_at_most_four(monkeypatch: pytest.MonkeyPatch):
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == max(1, min(4, cores))
    monkeypatch.delenv("TRIAGE_WORKERS", raising=False)
    assert Settings().workers == default_workers()
    monkeypatch.setenv("TRIAGE_WORKERS", "1")
    assert Settings().workers == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert default_workers() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert default_workers() == 1


def test_kill_9_of_serve_py_ends_its_workers_and_frees_the_port(tmp_path: Path, small_model_dir: Path):
    """serve.py without ``--workers`` runs its default number of workers. uvicorn's workers outlived a
    parent killed with SIGKILL, kept answering and kept the port; each now asks Linux to end it with
    its parent (``triage.app.die_with_parent``)."""
    if default_workers() < 2:
        pytest.skip("one core: serve.py's default is one process, with no workers to outlive it")
    srv = Server(tmp_path / "data", small_model_dir, workers=None)
    workers = _children(srv.proc.pid)
    spawned = [w for w in workers if "multiprocessing.spawn" in Path(f"/proc/{w}/cmdline").read_text()]
    assert len(spawned) == default_workers()
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv.log.close()
    try:
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers):
            assert time.monotonic() < deadline, "a worker outlived serve.py killed with SIGKILL"
            time.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.url}/healthz", timeout=5)
    finally:  # leave no orphan behind when it fails
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
