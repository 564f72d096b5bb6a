"""CPU and wall time per case of the store's group-committed write alone, as the service's batch worker calls it.

    python bench/store_cpu.py [--models models] [--rows 2000] [--batch 1] [--repeat 5] [--external-ids]

Builds --rows real case records once (distinct real complaints of the last three Traffy months through
``Cases._records``: the prediction, routing and masking are done before any timing), then --repeat times
writes them into a fresh SQLite file (WAL) with ``store.create_cases_each`` in batches of --batch, and
prints the CPU and wall milliseconds per case of each run (the lowest is the steadiest on a shared
machine). --external-ids gives each record a distinct external_id (the idempotency lookup runs too).
To compare two versions, run this script with ``PYTHONPATH`` set to each checkout, alternately.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from triage.cases import Cases
from triage.database import open_store
from triage.schemas import ComplaintIn
from triage.serving import ModelHolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases_cpu import recent_complaints  # noqa: E402  (bench/cases_cpu.py: the same complaints)

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(REPO / "models"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--external-ids", action="store_true")
    a = ap.parse_args()
    frame = recent_complaints(a.data).head(a.rows)
    items = [ComplaintIn(text=t, district=d if isinstance(d, str) else None)
             for t, d in zip(frame["comment"].str.slice(0, 2000), frame["district"])]
    served = ModelHolder(Path(a.models) / "current").reload()
    with tempfile.TemporaryDirectory(prefix="triage-store-cpu-") as tmp:
        scratch = open_store(str(Path(tmp) / "scratch.db"))
        records = Cases(scratch, served)._records(items)
        scratch.close()
        print(f"{len(records)} case records, batches of {a.batch}; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.2f}")
        for run in range(a.repeat):
            store = open_store(str(Path(tmp) / f"run{run}.db"))
            recs = [dict(r, external_id=f"r{run}-{i}" if a.external_ids else None) for i, r in enumerate(records)]
            cpu, wall = time.process_time(), time.perf_counter()
            for s in range(0, len(recs), a.batch):
                store.create_cases_each(recs[s : s + a.batch])
            n = len(recs)
            print(f"run {run + 1}: {1000 * (time.process_time() - cpu) / n:.3f} ms CPU, "
                  f"{1000 * (time.perf_counter() - wall) / n:.3f} ms wall a case; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
