"""CPU time per complaint of the served path without HTTP: prediction with routing, then the whole batch step.

    python bench/cases_cpu.py [--models models] [--rows 2000] [--batch 8] [--repeat 3]

Takes --rows distinct real complaints of the last three Traffy months and runs, in this process,
(1) ``predict`` with routing in chunks of 2,000 (as the CLI does) and (2) what the service's
micro-batch worker does for each batch of --batch requests: ``triage.api.triage_answers`` over
``Cases.triage_each`` (prediction, routing, case records, the group-committed insert into a real
SQLite file, the JSON answers). Prints the CPU time per complaint of each, --repeat times (the
lowest is the steadiest on a shared machine). To compare two versions, run each checkout's copy of
this script alternately, with ``PYTHONPATH`` set to that checkout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from triage.api import triage_answers
from triage.cases import Cases
from triage.database import open_store
from triage.prediction import predict
from triage.schemas import ComplaintIn
from triage.serving import ModelHolder

REPO = Path(__file__).resolve().parent.parent


def recent_complaints(data: str | Path) -> pd.DataFrame:
    """Distinct non-empty complaints (``comment``, ``district``) of the last three Traffy months, shuffled."""
    months = sorted(Path(data, "traffy").glob("*.parquet"))[-3:]
    frame = pd.concat([pd.read_parquet(m, columns=["comment", "district"]) for m in months])
    frame = frame.dropna(subset=["comment"]).drop_duplicates("comment").sample(frac=1.0, random_state=1)
    return frame[frame["comment"].str.strip().str.len() > 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(REPO / "models"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    frame = recent_complaints(a.data)
    need = a.rows * a.repeat * 2
    texts = frame["comment"].str.slice(0, 2000).tolist()[:need]
    districts = [d if isinstance(d, str) else None for d in frame["district"]][:need]
    if len(texts) < need:
        sys.exit(f"bench: only {len(texts)} distinct texts; use a smaller --rows or --repeat")
    served = ModelHolder(Path(a.models) / "current").reload()
    with tempfile.TemporaryDirectory(prefix="triage-cases-cpu-") as tmp:
        store = open_store(str(Path(tmp) / "triage.db"))
        cases = Cases(store, served)
        print(f"{a.rows} distinct complaints per run; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
        for run in range(a.repeat):
            part = slice(2 * run * a.rows, (2 * run + 1) * a.rows)  # never the same texts twice
            t, d = texts[part], districts[part]
            cpu = time.process_time()
            for s in range(0, len(t), 2000):
                predict(served.model, t[s : s + 2000], d[s : s + 2000], served.router)
            predict_ms = 1000 * (time.process_time() - cpu) / len(t)
            part = slice((2 * run + 1) * a.rows, (2 * run + 2) * a.rows)
            items = [ComplaintIn(text=x, district=y) for x, y in zip(texts[part], districts[part])]
            cpu = time.process_time()
            for s in range(0, len(items), a.batch):
                triage_answers(cases, items[s : s + a.batch])
            batch_ms = 1000 * (time.process_time() - cpu) / len(items)
            print(f"run {run + 1}: predict with routing {predict_ms:.3f} ms CPU a complaint; batches of {a.batch} "
                  f"through Cases.triage_each {batch_ms:.3f} ms; load average {os.getloadavg()[0]:.2f}", flush=True)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
