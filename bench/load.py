"""Load test of POST /v1/triage on loopback: p50/p99 latency and requests/s at 1, 8 and 32 clients.

    python bench/load.py [--models models] [--seconds 10] [--clients 1,8,32]

Starts serve.py on a free loopback port with a fresh database under a temporary folder (every
case is stored, as in production), sends real complaint texts from the shared Traffy data over
keep-alive connections from a light asyncio client, and prints one line per concurrency level
and the service's memory (resident set size, now and peak). Bounded: each level runs for
--seconds (and at most --max-requests), never against anything but 127.0.0.1.
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


def complaint_texts(data: Path, n: int = 2000) -> list[str]:
    import pandas as pd

    files = sorted((data / "traffy").glob("*.parquet"))
    if not files:
        sys.exit(f"bench: no Traffy data under {data}/traffy (use --data)")
    texts = pd.read_parquet(files[-1], columns=["comment"])["comment"].dropna()
    texts = texts[texts.str.strip().str.len() > 0]
    return texts.sample(min(n, len(texts)), random_state=0).str.slice(0, 2000).tolist()


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


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process and its children (workers), in MB (Linux /proc)."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    rss = peak = 0.0
    for p in pids:
        text = Path(f"/proc/{p}/status").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        rss += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
    return rss, peak


async def client(port: int, texts: list[str], offset: int, stop_at: float, budget: list[int],
                 latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            body = json.dumps({"text": texts[i % len(texts)], "district": "บางรัก"}, ensure_ascii=False).encode()
            i += 1
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


async def level(port: int, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(client(port, texts, k * 997, stop_at, budget, latencies, errors) for k in range(clients)))
    elapsed = time.perf_counter() - started
    lat = sorted(latencies)
    return {
        "clients": clients, "requests": len(lat), "errors": len(errors), "rps": len(lat) / elapsed,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(REPO / "models"), help="models folder with current (default: models)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data folder (for texts)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each level")
    ap.add_argument("--max-requests", type=int, default=20_000, help="cap on requests per level")
    ap.add_argument("--workers", type=int, default=1, help="server processes (serve.py --workers)")
    ap.add_argument("--slice-model", action="store_true",
                    help="train a small model on a slice of the data into a temporary folder and use it")
    a = ap.parse_args()
    if a.slice_model:
        a.models = str(slice_model(Path(a.data)))
    if not (Path(a.models) / "current").exists():
        sys.exit(f"bench: no model at {a.models}/current; train one with: make train (or pass --slice-model)")
    texts = complaint_texts(Path(a.data))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        env = {**os.environ, "TRIAGE_DATA_DIR": tmp, "TRIAGE_MODELS_DIR": a.models, "TRIAGE_API_KEYS": f"{KEY}:intake",
               "TRIAGE_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(a.workers)],
                                env=env, cwd=REPO)
        try:
            t0 = time.perf_counter()
            while True:
                if proc.poll() is not None:
                    return 1
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            rss, _ = rss_mb(proc.pid)
            print(f"{a.workers} worker(s); service ready in {time.perf_counter() - t0:.1f} s, RSS {rss:.0f} MB; "
                  f"{len(texts)} real complaint texts, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            asyncio.run(level(port, texts, 4, 2.0, 500))  # warm-up, not reported
            print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7}")
            for n in (int(x) for x in a.clients.split(",")):
                r = asyncio.run(level(port, texts, n, a.seconds, a.max_requests))
                rss, peak = rss_mb(proc.pid)
                print(f"{n:>7} {r['requests']:>8} {r['errors']:>6} {r['rps']:>7.0f} {r['p50_ms']:>7.1f} "
                      f"{r['p99_ms']:>7.1f} {rss:>7.0f}", flush=True)
            rss, peak = rss_mb(proc.pid)
            db = Path(tmp) / "triage.db"
            print(f"service memory: RSS {rss:.0f} MB, peak {peak:.0f} MB; database "
                  f"{sum(f.stat().st_size for f in Path(tmp).glob('triage.db*')) / 1e6:.1f} MB ({db.name} + WAL)")
        finally:
            proc.terminate()
            proc.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
