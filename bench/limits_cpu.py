"""What the throttling counters shared by the worker processes (``triage.limits``) cost a request.

    python bench/limits_cpu.py [--calls 20000] [--processes 2] [--repeat 2]

On a real ``limits.db`` in a temporary folder (SQLite, WAL, as the service opens it), per call, in
one process: ``FailureLimiter.retry_after`` (run before every keyed request, ``POST /v1/triage``
included: a read), ``RateLimiter.allow`` (every tracking lookup: one write), and
``FailureLimiter.fail`` (each wrong key or failed login: a write transaction). Each is timed over
``--calls`` calls from a few thousand client addresses, as CPU time (``time.process_time``) and wall
time. Then ``--processes`` processes take tokens from the same file at once (as the workers do):
calls per second in all and CPU a call. The load average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triage.limits import FailureLimiter, LimitsFile, RateLimiter  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(label: str, calls: int, fn) -> None:  # type: ignore[no-untyped-def]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"  {label:<44} {1e6 * cpu / calls:7.1f} us CPU a call, {1e6 * wall / calls:7.1f} us wall")


def hammer(path: str, calls: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = RateLimiter(LimitsFile(Path(path)), per_minute=30, burst=10)
    limiter.allow("warm-up")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(calls):
        limiter.allow(f"10.1.{i % 4000 // 250}.{i % 250}")
    out.put((time.process_time() - cpu0, time.perf_counter() - wall0))


def one_run(tmp: Path, calls: int, processes: int) -> None:
    file = LimitsFile(tmp / "limits.db")
    keys = FailureLimiter(file, "keys", 20, 60)
    tracking = RateLimiter(file, per_minute=30, burst=10)
    clients = [f"10.0.{i // 250}.{i % 250}" for i in range(4000)]
    for c in clients[::2]:  # half the clients have a failure on record
        keys.fail(c)
    timed("retry_after (every keyed request)", calls, lambda i: keys.retry_after(clients[i % 4000]))
    timed("allow (every tracking lookup)", calls, lambda i: tracking.allow(clients[i % 4000]))
    timed("fail (a wrong key or failed login)", calls // 4, lambda i: keys.fail(f"10.9.{i // 250 % 250}.{i % 250}"))
    file.close()
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=hammer, args=(str(tmp / "limits.db"), calls, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    cpu = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    total = calls * processes
    print(f"  {processes} processes taking tracking tokens at once: {total / wall:,.0f} calls/s in all, "
          f"{1e6 * cpu / total:.1f} us CPU a call; load average {load()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    for run in range(1, a.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="triage-limits-") as tmp:
            print(f"run {run}: load average {load()}")
            one_run(Path(tmp), a.calls, a.processes)
    return 0

if __name__ == "__main__":
    sys.exit(main())
