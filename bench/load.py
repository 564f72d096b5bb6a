"""Load test of POST /v1/triage on loopback, against a no-model endpoint measured in the same run.

    python bench/load.py [--models models] [--seconds 10] [--clients 1,8] [--workers N] [--noop-workers N[,M]]

Starts servers on free loopback ports, all uvicorn[standard] (uvloop, httptools): the no-model
baseline (``bench/noop_app.py``: the same FastAPI stack, validates the same body into
``ComplaintIn``, answers a fixed JSON) and the real service (``serve.py``, a fresh database under a
temporary folder, every case stored). The service runs with ``--workers`` processes, or without the
option, so with serve.py's own default (one per available core, at most 4); the baseline with the
same number of workers, or with each count of ``--noop-workers`` (``--noop-workers 2,1``: two
baselines, one with two workers and one with one, both measured in the same run). Then, for each
concurrency level, the same keep-alive asyncio clients post distinct real complaint texts from the
shared Traffy data (``TextFeed``: none is sent twice to a server until all have been) to each
baseline and then to the service, and one line each is printed: requests/s, the service's share of
the first baseline's requests/s (then one line with its share of each baseline, each named by its
worker count), p50/p99 latency, errors (anything but 201) and
the server's CPU time per request (its processes' user + system time over the level, from /proc:
on a shared machine steadier than the requests/s) and the resident memory of each worker process
(and of any process a worker forked). Bounded: each level runs for
--seconds (at most --max-requests), never against anything but 127.0.0.1. The load average is printed at the start
and the end: the clients share the machine's cores with the servers and with anything else running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-intake-key"


def complaint_texts(data: Path, months: int = 3) -> list[str]:
    """Distinct real complaint texts (up to 2,000 characters) of the last ``months`` Traffy months, shuffled."""
    import pandas as pd

    files = sorted((data / "traffy").glob("*.parquet"))[-months:]
    if not files:
        sys.exit(f"bench: no Traffy data under {data}/traffy (use --data)")
    texts = pd.concat([pd.read_parquet(f, columns=["comment"])["comment"] for f in files]).dropna()
    texts = texts[texts.str.strip().str.len() > 0].str.slice(0, 2000).drop_duplicates()
    return texts.sample(frac=1.0, random_state=0).tolist()


class TextFeed:
    """Hands out the texts in turn to every client of one server: no text is sent twice until all
    have been (about 30,000 distinct complaints), so no cache inside the service can answer a
    repeated text from memory. ``repeats`` counts the texts sent again after a wrap-around."""

    def __init__(self, texts: list[str], start: int = 0) -> None:
        self.texts, self.i, self.sent = texts, start, 0

    def next(self) -> str:
        text = self.texts[self.i % len(self.texts)]
        self.i += 1
        self.sent += 1
        return text

    @property
    def repeats(self) -> int:
        return max(0, self.sent - len(self.texts))


def models_dir(models: str, data: str, use_slice: bool) -> str:
    """The models folder a bench serves from: a fresh slice model with ``--slice-model``, else ``models``
    (the bench stops with the command that trains one when it has no ``current``)."""
    if use_slice:
        return str(slice_model(Path(data)))
    if not (Path(models) / "current").exists():
        sys.exit(f"bench: no model at {models}/current; train one with: make train (or pass --slice-model)")
    return models


def slice_model(data: Path) -> Path:
    """A model trained on a real slice (500 tickets a month), as the tests use; about a minute."""
    from triage.data import load_config
    from triage.testing import write_traffy_slice
    from triage.training import TrainOptions, train

    root = Path(tempfile.mkdtemp(prefix="triage-bench-model-"))
    config = load_config(REPO / "configs" / "traffy.toml", write_traffy_slice(root / "slice", data=data))
    train(config, root / "models", TrainOptions(), log=lambda _m: None)
    print(f"trained a slice model into {root / 'models'}")
    return root / "models"


def children(pid: int) -> list[int]:
    """A process's children, forked by any of its threads, except multiprocessing's resource tracker."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in kids:
            try:
                if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    out.append(child)
            except OSError:
                pass
    return sorted(out)


def worker_pids(pid: int) -> list[int]:
    """The processes that serve requests: uvicorn's worker children, or the process itself when it has none.
    A process a worker forked (a child of the worker) is not one."""
    workers = [c for c in children(pid) if b"uvicorn" in Path(f"/proc/{c}/cmdline").read_bytes()
               or b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return workers or [pid]


def memory(pid: int) -> str:
    """RSS of each worker, and of each worker's prediction process with its proportional share (PSS: the
    model's pages it shares with the worker copy-on-write count half)."""
    parts = []
    for w in worker_pids(pid):
        text = ", ".join(f"{m:.0f}" for m in rss_mb([w]))
        for runner in children(w):
            text += f" + prediction process {rss_mb([runner])[0]:.0f} (PSS {pss_mb(runner):.0f})"
        parts.append(text)
    return "; ".join(parts)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a server: its workers and their prediction processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for w in worker_pids(pid):
        for p in [w, *children(w)]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mb(pids: list[int]) -> list[float]:
    """Resident memory of each process, in MB (Linux /proc)."""
    out = []
    for p in pids:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        out.append(int(fields["VmRSS"].split()[0]) / 1024)
    return out


async def client(port: int, feed: TextFeed, stop_at: float, budget: list[int],
                 latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    if sock is not None:  # the request goes out in one write; do not let Nagle hold the next one
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            body = json.dumps({"text": feed.next(), "district": "บางรัก"}, ensure_ascii=False).encode()
            head = (f"POST /v1/triage HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            status = status_line.split(b" ")[1] if b" " in status_line else b"?"
            if status != b"201":
                errors.append(status.decode())
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


async def level(port: int, feed: TextFeed, clients: int, seconds: float, max_requests: int) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(client(port, feed, stop_at, budget, latencies, errors) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    lat = sorted(latencies)
    return {
        "clients": clients, "requests": len(lat), "errors": len(errors), "rps": len(lat) / elapsed,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "kinds": sorted(set(errors))[:5],
    }


def run_level(port: int, feed: TextFeed, clients: int, seconds: float, max_requests: int) -> dict[str, float]:
    try:
        import uvloop  # the client too: a slow client would cap both servers alike and hide the gap
    except ImportError:
        return asyncio.run(level(port, feed, clients, seconds, max_requests))
    return uvloop.run(level(port, feed, clients, seconds, max_requests))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen, port: int, what: str, timeout: float = 300) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"bench: the {what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    sys.exit(f"bench: the {what} was not ready in {timeout:.0f} s")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(REPO / "models"), help="models folder with current (default: models)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data folder (for texts)")
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each level")
    ap.add_argument("--max-requests", type=int, default=50_000, help="cap on requests per level")
    ap.add_argument("--workers", type=int, default=None,
                    help="serve.py processes (default: none given, so serve.py's default: one per core, at most 4)")
    ap.add_argument("--noop-workers", default=None,
                    help="worker counts of the no-model baselines, comma-separated (default: the service's count)")
    ap.add_argument("--slice-model", action="store_true",
                    help="train a small model on a slice of the data into a temporary folder and use it")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from triage.config import default_workers

    workers = a.workers if a.workers is not None else default_workers()
    noop_workers = [int(x) for x in a.noop_workers.split(",")] if a.noop_workers else [workers]
    a.models = models_dir(a.models, a.data, a.slice_model)
    texts = complaint_texts(Path(a.data))
    levels = [int(x) for x in a.clients.split(",")]
    base_ports, port = [free_port() for _ in noop_workers], free_port()
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        env = {**os.environ, "TRIAGE_DATA_DIR": tmp, "TRIAGE_MODELS_DIR": a.models, "TRIAGE_API_KEYS": f"{KEY}:intake",
               "TRIAGE_LOG_LEVEL": "warning", "BENCH_KEY": KEY}
        env.pop("TRIAGE_WORKERS", None)
        bases = [subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(REPO / "bench"), "noop_app:app",
                                   "--host", "127.0.0.1", "--port", str(bp), "--workers", str(nw),
                                   "--log-level", "warning", "--no-access-log"], env=env, cwd=REPO)
                 for bp, nw in zip(base_ports, noop_workers, strict=True)]
        given = ["--workers", str(a.workers)] if a.workers is not None else []
        proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port", str(port),
                                 *given], env=env, cwd=REPO)
        names = [f"no-model {nw}w" for nw in noop_workers]
        try:
            for base, bp in zip(bases, base_ports, strict=True):
                wait_ready(base, bp, "no-model endpoint")
            ready = wait_ready(proc, port, "service")
            served_by = len(worker_pids(proc.pid)) if workers > 1 else 1
            feeds = {p: TextFeed(texts) for p in [*base_ports, port]}
            how = f"--workers {a.workers}" if a.workers is not None else "serve.py's default"
            print(f"service: {workers} worker(s) ({how}; {served_by} running); no-model endpoint(s): "
                  f"{', '.join(f'{nw} worker(s)' for nw in noop_workers)}; service ready in {ready:.1f} s; "
                  f"{len(texts)} distinct real complaint texts; {os.cpu_count()} CPUs; load average {load()}")
            for p in [*base_ports, port]:
                run_level(p, feeds[p], 4, 2.0, 500)  # warm-up, not reported
            print(f"{'server':>11} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'share':>6} {'p50 ms':>7} "
                  f"{'p99 ms':>7} {'CPU ms':>6}  RSS MB per worker")
            for n in levels:
                measured = []
                for name, server, bp in zip(names, bases, base_ports, strict=True):
                    cpu0 = cpu_seconds(server.pid)
                    b = run_level(bp, feeds[bp], n, a.seconds, a.max_requests)
                    b["cpu_ms"] = 1000 * (cpu_seconds(server.pid) - cpu0) / max(1, b["requests"])
                    measured.append((name, b, server.pid))
                cpu0 = cpu_seconds(proc.pid)
                r = run_level(port, feeds[port], n, a.seconds, a.max_requests)
                r["cpu_ms"] = 1000 * (cpu_seconds(proc.pid) - cpu0) / max(1, r["requests"])
                first = measured[0][1]
                for name, x, pid in (*measured, ("service", r, proc.pid)):
                    share = f"{x['rps'] / first['rps']:.0%}" if first["rps"] else "-"
                    rss = memory(pid)
                    kinds = f"  ({', '.join(x['kinds'])})" if x["errors"] else ""
                    print(f"{name:>11} {n:>7} {x['requests']:>8} {x['errors']:>6} {x['rps']:>7.0f} {share:>6} "
                          f"{x['p50_ms']:>7.1f} {x['p99_ms']:>7.1f} {x['cpu_ms']:>6.2f}  {rss}{kinds}", flush=True)
                shares = [f"{r['rps'] / b['rps']:.0%} of {name}" if b["rps"] else f"- of {name}"
                          for name, b, _ in measured]
                print(f"{'':>11} {n:>7} service ({workers} worker(s)) at {', '.join(shares)}", flush=True)
            db = Path(tmp) / "triage.db"
            print(f"texts sent to the service: {feeds[port].sent}, sent a second time: {feeds[port].repeats}")
            print(f"database {sum(f.stat().st_size for f in Path(tmp).glob('triage.db*')) / 1e6:.1f} MB "
                  f"({db.name} + WAL); load average at the end {load()}")
        finally:
            for p in (proc, *bases):
                p.terminate()
            for p in (proc, *bases):
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
