"""Two serve.py replicas on one PostgreSQL, one killed with SIGKILL mid-load: lost and duplicate cases.

    python bench/replicas.py [--models models] [--seconds 30] [--kill-at 15] [--threads 16]
                             [--retry-share 0.3] [--database-url postgresql://...] [--slice-model]

Starts a throwaway PostgreSQL cluster (``triage.pgcluster``, PostgreSQL's default durability: fsync
and synchronous commit on) unless ``--database-url`` names one, then two ``serve.py`` processes
(replicas A and B, one worker each, their own data folders, as on two machines) on that database.
Client threads behave like an intake system behind a load balancer: each complaint (a real Traffy
text, a fresh ``external_id``) goes to one replica and is retried with the same ``external_id``
until it is acknowledged (a 200 or 201), on the other replica when its replica does not answer (a
replica that failed is avoided for a second, like nginx's ``max_fails``/``fail_timeout``).
``--retry-share`` of the complaints are also sent a second time at once to the other replica (an
intake system that retries before the first answer came), so two replicas race on one id.
At ``--kill-at`` seconds replica A gets SIGKILL; the load goes on against B until ``--seconds``,
then unanswered complaints have 60 s to be acknowledged.

Printed: complaints, acknowledged, lost (acknowledged but not in the database under that id, or
not the case acknowledged: must be 0), duplicate (an id with more than one case, or acknowledged
with two different case ids: must be 0), answers by status and errors by kind; requests/s with
both replicas (before the kill) and with B alone (after), and the same client load against one
``serve.py`` on SQLite for the same time as the first phase. Everything runs on this machine: the
clients, the replicas and PostgreSQL share its cores, so the numbers are for comparison here.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import REPO, complaint_texts, free_port, load, models_dir, wait_ready  # noqa: E402

KEY = "bench-replicas-intake-key"


class Replica:
    def __init__(self, name: str, folder: Path, models: str, database_url: str) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = folder / name
        data.mkdir(parents=True)
        env = {**os.environ, "TRIAGE_DATA_DIR": str(data), "TRIAGE_MODELS_DIR": models, "TRIAGE_API_KEYS": f"{KEY}:intake",
               "TRIAGE_LOG_LEVEL": "warning", "TRIAGE_DATABASE_URL": database_url}
        self.log = (folder / f"{name}.log").open("w")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port",
                                      str(self.port), "--workers", "1"], env=env, cwd=REPO, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def ready(self) -> float:
        return wait_ready(self.proc, self.port, f"replica {self.name}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Load:
    """Client threads sending complaints to ``urls`` until ``stop`` (see the module docstring)."""

    def __init__(self, urls: list[str], texts: list[str], run: str, threads: int, retry_share: float) -> None:
        self.urls, self.texts, self.run, self.threads = urls, texts, run, threads
        self.retry_share = retry_share
        self.lock = threading.Lock()
        self.jobs = self._jobs()
        self.acked: dict[str, set[int]] = {}
        self.sent: set[str] = set()
        self.statuses: Counter[str] = Counter()
        self.ok_at: list[float] = []
        self.down_until = [0.0] * len(urls)
        self.stop_new = threading.Event()
        self.give_up_at = float("inf")

    def _jobs(self) -> Any:
        rng = random.Random(0)
        for k in itertools.count():
            target = rng.randrange(len(self.urls))
            yield k, target
            if len(self.urls) > 1 and rng.random() < self.retry_share:
                yield k, 1 - target  # the same complaint at once to the other replica

    def _next(self) -> tuple[int, int]:
        with self.lock:
            return next(self.jobs)

    def _worker(self) -> None:
        clients = [httpx.Client(base_url=u, timeout=30, headers={"X-API-Key": KEY}) for u in self.urls]
        try:
            while not self.stop_new.is_set():
                k, target = self._next()
                self._send(clients, k, target)
        finally:
            for c in clients:
                c.close()

    def _send(self, clients: list[httpx.Client], k: int, target: int) -> None:
        ext = f"{self.run}-{k}"
        body = {"text": self.texts[k % len(self.texts)], "external_id": ext, "district": "บางรัก"}
        with self.lock:
            self.sent.add(ext)
        attempt = 0
        while time.monotonic() < self.give_up_at:
            now = time.monotonic()
            if self.down_until[target] > now and self.down_until[1 - target if len(self.urls) > 1 else 0] <= now:
                target = 1 - target
            try:
                r = clients[target].post("/v1/triage", json=body)
                kind = str(r.status_code)
            except httpx.TransportError as exc:
                r, kind = None, type(exc).__name__
            with self.lock:
                self.statuses[kind] += 1
            if r is not None and r.status_code in (200, 201):
                with self.lock:
                    self.acked.setdefault(ext, set()).add(int(r.json()["case_id"]))
                    self.ok_at.append(time.monotonic())
                return
            if r is not None and r.status_code in (400, 409, 413, 422):
                return  # refused for good (never expected here): not acknowledged
            self.down_until[target] = time.monotonic() + 1.0  # avoid it for a second, try the other
            if len(self.urls) > 1:
                target = 1 - target
            attempt += 1
            time.sleep(min(0.5, 0.02 * attempt))

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.threads)]
        for t in threads:
            t.start()
        return threads

    def rate(self, start: float, end: float) -> float:
        n = sum(1 for t in self.ok_at if start <= t < end)
        return n / (end - start) if end > start else float("nan")


def check(load_: Load, stored: list[tuple[str, int]]) -> dict[str, int]:
    """Compare what was acknowledged with what the database holds."""
    in_db: dict[str, list[int]] = {}
    for ext, case_id in stored:
        in_db.setdefault(ext, []).append(case_id)
    lost = sum(1 for ext, ids in load_.acked.items() if not set(ids) <= set(in_db.get(ext, [])))
    duplicate = sum(1 for ids in in_db.values() if len(ids) > 1)
    duplicate += sum(1 for ids in load_.acked.values() if len(ids) > 1)
    return {"complaints": len(load_.sent), "acknowledged": len(load_.acked), "lost": lost, "duplicate": duplicate,
            "stored": len(stored), "unacknowledged": len(load_.sent) - len(load_.acked)}


def pg_cases(url: str, run: str) -> list[tuple[str, int]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [(str(e), int(i)) for e, i in conn.execute("SELECT external_id, id FROM cases WHERE external_id LIKE %s",
                                                          (f"{run}-%",)).fetchall()]


def finish(load_: Load, threads: list[threading.Thread], grace: float = 60.0) -> None:
    load_.stop_new.set()
    load_.give_up_at = time.monotonic() + grace
    for t in threads:
        t.join(grace + 35)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(REPO / "models"), help="models folder with current (default: models)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data folder (for texts)")
    ap.add_argument("--seconds", type=float, default=30.0, help="load duration of the replica run")
    ap.add_argument("--kill-at", type=float, default=15.0, help="SIGKILL replica A this many seconds into the load")
    ap.add_argument("--threads", type=int, default=16, help="client threads")
    ap.add_argument("--retry-share", type=float, default=0.3, help="share of complaints sent to both replicas at once")
    ap.add_argument("--database-url", default="", help="an existing empty PostgreSQL database (default: a throwaway "
                                                       "cluster)")
    ap.add_argument("--pool-size", type=int, default=10, help="TRIAGE_DATABASE_POOL_SIZE of each replica")
    ap.add_argument("--slice-model", action="store_true", help="train a small model on a slice of the data first")
    a = ap.parse_args()
    a.models = models_dir(a.models, a.data, a.slice_model)
    texts = complaint_texts(Path(a.data))
    os.environ["TRIAGE_DATABASE_POOL_SIZE"] = str(a.pool_size)
    cluster = None
    if not a.database_url:
        from triage.pgcluster import Cluster

        cluster = Cluster(durable=True).start()
        a.database_url = cluster.create_database("bench")
    run = f"r{int(time.time())}"
    print(f"{os.cpu_count()} CPUs, load average {load()}; {len(texts)} real complaint texts; {a.threads} client threads; "
          f"retry share {a.retry_share}; pool size {a.pool_size} per replica; "
          f"PostgreSQL {'throwaway cluster (fsync on)' if cluster else 'given'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="triage-replicas-") as tmp:
        folder = Path(tmp)
        replicas = [Replica("A", folder, a.models, a.database_url), Replica("B", folder, a.models, a.database_url)]
        try:
            ready = [r.ready() for r in replicas]
            print(f"replicas ready in {ready[0]:.1f} s and {ready[1]:.1f} s", flush=True)
            load_ = Load([r.url for r in replicas], texts, run, a.threads, a.retry_share)
            t0 = time.monotonic()
            threads = load_.start()
            time.sleep(a.kill_at)
            replicas[0].kill9()
            t_kill = time.monotonic()
            print(f"SIGKILL to replica A at {t_kill - t0:.1f} s (exit {replicas[0].proc.returncode})", flush=True)
            time.sleep(max(0.0, a.seconds - a.kill_at))
            t_end = time.monotonic()
            finish(load_, threads)
            result = check(load_, pg_cases(a.database_url, run))
            both, alone = load_.rate(t0 + 1.0, t_kill), load_.rate(t_kill + 2.0, t_end)
        finally:
            for r in replicas:
                r.stop()
        print(f"two replicas, kill -9 of A: complaints {result['complaints']}, acknowledged {result['acknowledged']}, "
              f"lost {result['lost']}, duplicate {result['duplicate']} (cases stored {result['stored']}, "
              f"unacknowledged {result['unacknowledged']})")
        print("  answers: " + ", ".join(f"{k} {v}" for k, v in sorted(load_.statuses.items())))
        print(f"  acknowledged requests/s: both replicas {both:.0f} (1 s after the start to the kill), "
              f"B alone {alone:.0f} (2 s after the kill to the end)", flush=True)

        # the same clients against one serve.py on SQLite, for as long as the two-replica phase lasted
        sqlite_dir = folder / "sqlite"
        one = Replica("S", sqlite_dir, a.models, f"sqlite:///{sqlite_dir / 'S' / 'triage.db'}")
        try:
            one.ready()
            base = Load([one.url], texts, run + "s", a.threads, 0.0)
            s0 = time.monotonic()
            threads = base.start()
            time.sleep(a.kill_at)
            s_end = time.monotonic()
            finish(base, threads)
            db = sqlite3.connect(sqlite_dir / "S" / "triage.db")
            stored = [(str(e), int(i)) for e, i in db.execute("SELECT external_id, id FROM cases")]
            db.close()
            sqlite_result = check(base, stored)
            single = base.rate(s0 + 1.0, s_end)
        finally:
            one.stop()
    print(f"one SQLite process: acknowledged requests/s {single:.0f}; acknowledged {sqlite_result['acknowledged']}, "
          f"lost {sqlite_result['lost']}, duplicate {sqlite_result['duplicate']}")
    print(f"two PostgreSQL replicas / one SQLite process: {both / single:.2f}x; load average at the end {load()}")
    if cluster is not None:
        cluster.stop()
    return 0 if result["lost"] == 0 and result["duplicate"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
