"""Where a request's time goes in the running service: py-spy samples under load, per part, per request.

    python bench/profile_serve.py [--models models] [--clients 8] [--seconds 15]

Starts ``serve.py`` (one worker, a fresh database) on a loopback port, drives it with
``bench/load.py``'s keep-alive clients and meanwhile records it with py-spy (``--gil``: only the
thread holding the GIL is sampled, so samples are CPU time spent in Python code of this process,
whichever thread). Each sample is put in the part its innermost recognised frame belongs to:

    HTTP         uvicorn, Starlette, FastAPI routing, the event loop, sending the response
    validation   reading the body, JSON parsing and ComplaintIn validation, the API key, text checks
    batching     the micro-batcher (queue, futures, hand-over to the worker thread)
    model        normalising, features, topic and urgency heads, explanations
    routing      the router and the agency model
    case record  masking personal data, review reasons, the response JSON of the case
    store        SQLite: the group-committed insert of the batch, lookups

and printed as milliseconds of CPU per request. Then the server's CPU time per request from /proc
(user + system, all of it, also C code that runs without the GIL: SQLite, nlpo3, the kernel),
split into the event loop's thread (the process's main thread: HTTP, the fast path, the
batcher's collector) and the other threads (the batcher's worker: model, routing, case records,
the store). With ``--no-spy`` only that, with no py-spy beside the server. Needs py-spy (``pip install py-spy``) and the
right to trace a child process (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # bench/load.py: texts, clients, server start

PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("store", ("SQLiteStore.", "find_external")),
    ("routing", ("Router.", "BatchKinds", "agency_proba", "Directory.")),
    ("model", ("TriageModel.predict", "normalize_many")),
    ("case record", ("case_records", "triage_json", "mask_personal", "review_reasons", "triage_each")),
    ("batching", ("MicroBatcher.",)),
    ("validation", ("TriageFastPath._plainly_fine", "TriageFastPath._read", "request_body_to_args", "_validate_value", "validate_python", "Request.json", "Request.body",
                    "check_text", "solve_dependencies", "APIKeyHeader", "_get_body")),
]


IDLE = ("MicroBatcher._work (triage/batching.py", "_worker (concurrent/futures/thread.py")
"""The batch worker thread's own frame (or an executor's) as the innermost one: the thread is blocked on its
queue with the GIL released. py-spy's ``--gil`` takes the GIL's last holder for its holder, so while the
whole process waits (one client between requests) these samples pile up; they are not CPU time."""


def part_of(stack: list[str]) -> str:
    if stack and stack[-1].startswith(IDLE):
        return "idle"
    for frame in reversed(stack):  # innermost first
        for name, marks in PARTS:
            if any(m in frame for m in marks):
                return name
    return "HTTP"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) so far of each thread of a process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(load.REPO / "models"))
    ap.add_argument("--data", default=str(load.REPO.parent / "shared" / "data"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--raw", default=None, help="also keep py-spy's raw (collapsed) stacks in this file")
    ap.add_argument("--no-spy", action="store_true",
                    help="no py-spy: only the server's CPU a request per thread, from /proc, with nothing beside it")
    a = ap.parse_args()
    feed = load.TextFeed(load.complaint_texts(Path(a.data)))
    port = load.free_port()
    with tempfile.TemporaryDirectory(prefix="triage-profile-") as tmp:
        env = {**os.environ, "TRIAGE_DATA_DIR": tmp, "TRIAGE_MODELS_DIR": a.models,
               "TRIAGE_API_KEYS": f"{load.KEY}:intake", "TRIAGE_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, str(load.REPO / "serve.py"), "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "1"], env=env, cwd=load.REPO)  # one process to profile
        raw = Path(tmp) / "spy.txt"
        try:
            load.wait_ready(proc, port, "service")
            load.run_level(port, feed, 4, 2.0, 500)  # warm-up
            exe = Path(sys.executable).parent / "py-spy"
            spy = None if a.no_spy else subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "--pid", str(proc.pid), "--gil", "--format", "raw",
                                    "--rate", str(a.rate), "--duration", str(int(a.seconds)), "--output", str(raw),
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if spy is not None:
                time.sleep(1.0)
            before = thread_cpu(proc.pid)
            r = load.run_level(port, feed, a.clients, a.seconds - 1.5, 10**6)
            after = thread_cpu(proc.pid)
            if spy is not None:
                spy.wait(60)
        finally:
            proc.terminate()
            proc.wait(20)
        if spy is None:
            per = 1000 / max(1, r["requests"])
            loop = after.get(proc.pid, 0.0) - before.get(proc.pid, 0.0)
            rest = sum(v - before.get(t, 0.0) for t, v in after.items() if t != proc.pid)
            print(f"{a.clients} clients: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                  f"{r['errors']} errors; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"server CPU (/proc, user + system) per request: event loop thread {loop * per:.3f} ms, other threads "
                  f"{rest * per:.3f} ms, total {(loop + rest) * per:.3f} ms")
            return 0
        if a.raw:
            Path(a.raw).write_text(raw.read_text())
        totals: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                totals[part_of(stack.split(";"))] += int(count)
    idle = totals.pop("idle", 0)
    samples = sum(totals.values())
    requests = r["requests"] * a.seconds / (a.seconds - 1.5)  # requests in the sampled window, about
    print(f"{a.clients} clients: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
          f"{r['errors']} errors; {samples} samples at {a.rate}/s (and {idle} of the batch thread waiting, left out); "
          f"load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'part':<12} {'share':>6} {'CPU ms per request':>19}")
    for name in ["HTTP", "validation", "batching", "model", "routing", "case record", "store"]:
        n = totals.get(name, 0)
        print(f"{name:<12} {n / samples:>6.0%} {1000 * n / a.rate / requests:>19.3f}")
    print(f"{'total':<12} {1:>6.0%} {1000 * samples / a.rate / requests:>19.3f}")
    loop = after.get(proc.pid, 0.0) - before.get(proc.pid, 0.0)
    rest = sum(v - before.get(t, 0.0) for t, v in after.items() if t != proc.pid)
    per = 1000 / max(1, r["requests"])
    print(f"server CPU (/proc, user + system) per request: event loop thread {loop * per:.3f} ms, other threads "
          f"{rest * per:.3f} ms, total {(loop + rest) * per:.3f} ms (py-spy running beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
