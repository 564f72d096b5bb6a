"""Following cases up (issue 10), measured on loopback: tracking lookups, webhook delay, hanging receivers.

    python bench/followup.py [--models models] [--n 200]

Starts serve.py on a free loopback port with a fresh database and a webhook receiver in this
process, then prints: GET /v1/track/{code} latency (p50/p99) and the Thai page's; how long after
a status change its signed event reaches the receiver (p50/p99); and the latency of status
changes while the receiver accepts and while it hangs (never answers), which should not differ.
Never talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
KEYS = "bench-intake-key-1:intake,bench-reviewer-key-1:reviewer"
INTAKE, REVIEWER = {"X-API-Key": "bench-intake-key-1"}, {"X-API-Key": "bench-reviewer-key-1"}
SECRET = "bench-webhook-secret-0001"
TEXTS = ["ไฟฟ้าดับทั้งซอย สายไฟช็อตมีประกายไฟ อันตรายมาก", "ถนนเป็นหลุมเป็นบ่อ รถจักรยานยนต์ล้มบ่อย",
         "ขยะไม่มีคนมาเก็บสามวันแล้ว ส่งกลิ่นเหม็น", "น้ำท่วมขังหน้าบ้านทุกครั้งที่ฝนตก ท่อระบายน้ำอุดตัน"]


class Receiver:
    def __init__(self) -> None:
        self.hang = threading.Event()
        self.release = threading.Event()
        self.arrived: dict[tuple[int, str], float] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if outer.hang.is_set():
                    outer.release.wait(60)
                    return
                outer.arrived.setdefault((body["case_id"], body["status"]), time.perf_counter())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"p50 {statistics.median(ms):.1f} ms, p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f} ms (n={len(ms)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    hook = Receiver()
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="triage-bench-followup-"))
    env = {**os.environ, "TRIAGE_DATA_DIR": str(data), "TRIAGE_MODELS_DIR": args.models, "TRIAGE_API_KEYS": KEYS,
           "TRIAGE_LOG_LEVEL": "warning", "TRIAGE_WEBHOOK_URL": hook.url, "TRIAGE_WEBHOOK_SECRET": SECRET,
           "TRIAGE_WEBHOOK_TIMEOUT": "2", "TRIAGE_TRACK_BURST": "100000"}
    log = (data / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--port", str(port)], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(300):
                if proc.poll() is not None:
                    sys.exit(f"bench: serve.py exited; see {log.name}")
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            cases = [c.post("/v1/triage", json={"text": TEXTS[i % len(TEXTS)], "district": "บางรัก"},
                            headers=INTAKE).json() for i in range(max(8, args.n // 4))]
            lookups = []
            for i in range(args.n):
                started = time.perf_counter()
                assert c.get(f"/v1/track/{cases[i % len(cases)]['tracking_code']}").status_code == 200
                lookups.append(time.perf_counter() - started)
            print(f"GET /v1/track/{{code}}: {pct(lookups)}")
            pages = []
            for i in range(args.n // 4):
                started = time.perf_counter()
                assert c.get(f"/track/{cases[i % len(cases)]['tracking_code']}").status_code == 200
                pages.append(time.perf_counter() - started)
            print(f"GET /track/{{code}} (Thai page): {pct(pages)}")

            def moves(status: str, batch: list[dict[str, Any]]) -> tuple[list[float], dict[int, float]]:
                took, done = [], {}
                for case in batch:
                    started = time.perf_counter()
                    r = c.post(f"/v1/cases/{case['case_id']}/status", json={"actor": "bench", "status": status},
                               headers=REVIEWER)
                    assert r.status_code == 200, r.text
                    took.append(time.perf_counter() - started)
                    done[case["case_id"]] = started
                return took, done

            half = len(cases) // 2
            took, done = moves("assigned", cases[:half])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len([k for k in hook.arrived if k[1] == "assigned"]) < half:
                time.sleep(0.05)
            delays = [hook.arrived[(cid, "assigned")] - at for cid, at in done.items() if (cid, "assigned") in hook.arrived]
            print(f"status change, receiver answering: {pct(took)}")
            print(f"status change sent -> signed event at the receiver: {pct(delays)}")
            hook.hang.set()
            took_hanging, _ = moves("assigned", cases[half:])
            print(f"status change, receiver hanging: {pct(took_hanging)}")
            hook.release.set()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
