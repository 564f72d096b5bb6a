"""Prediction speed of a trained model on real complaint texts.

    python bench/predict_speed.py --model models/current --data ../shared/data --rows 10000

Prints the model's load time, single-text latency (p50/p99 over 500 texts, one at a time) and
batch throughput over --rows distinct texts from the last two Traffy months, with and without routing, in
chunks of 2,000 as the CLI reads them, with the CPU time of each (this process's; on a shared
machine steadier than the wall clock): in one process, and with routing in --jobs worker processes
as ``python -m triage predict`` runs by default (one per core; ``triage.parallel``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from triage import registry
from triage.parallel import ParallelPredict, default_jobs
from triage.prediction import predict
from triage.routing import Router


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/current")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=default_jobs(), help="worker processes for the last line")
    a = ap.parse_args()
    months = sorted(Path(a.data, "traffy").glob("*.parquet"))[-2:]
    frame = pd.concat([pd.read_parquet(m, columns=["comment", "district"]) for m in months])
    frame = frame.dropna(subset=["comment"]).drop_duplicates("comment")  # distinct texts: no cache answers a repeat
    frame = frame.sample(min(a.rows, len(frame)), random_state=0)
    texts, districts = frame["comment"].tolist(), frame["district"].tolist()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    t0 = time.perf_counter()
    model, meta = registry.load(a.model)
    router = Router.load()
    print(f"model {meta['version']}: loaded in {time.perf_counter() - t0:.2f}s")
    predict(model, texts[:10], districts[:10], router)  # warm-up (tokenizer dictionary)
    lat = []
    cpu = time.process_time()
    for i in range(min(500, len(texts))):
        t = time.perf_counter()
        predict(model, [texts[i]], [districts[i]], router)
        lat.append((time.perf_counter() - t) * 1000)
    cpu = time.process_time() - cpu
    print(f"one text at a time: p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms, "
          f"CPU {1000 * cpu / len(lat):.2f} ms per text")
    for name, r in (("without routing", None), ("with routing", router)):
        t, cpu = time.perf_counter(), time.process_time()
        for s in range(0, len(texts), 2000):
            predict(model, texts[s : s + 2000], districts[s : s + 2000], r)
        dt, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"batch of {len(texts)} {name}: {dt:.1f}s, {len(texts) / dt:.0f} texts/s; "
              f"CPU {cpu:.1f}s, {1000 * cpu / len(texts):.2f} ms per text")
    with ParallelPredict(predict, model, router, a.jobs) as run:
        run(texts[:600], districts[:600])  # starts the workers
        t = time.perf_counter()
        n = sum(len(run(texts[s : s + 2000], districts[s : s + 2000])) for s in range(0, len(texts), 2000))
        dt = time.perf_counter() - t
    print(f"batch of {n} with routing, {a.jobs} processes (the CLI's default): {dt:.1f}s, {n / dt:.0f} texts/s")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
