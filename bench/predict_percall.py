"""The model's fixed cost per call: CPU time a complaint of ``predict`` (with routing) in chunks of 1, 8 and 64.

    python bench/predict_percall.py [--models models] [--texts 400] [--repeat 2]

The served model is loaded and warmed as the service does it (``triage.serving.ModelHolder``), then
distinct recent real complaints (``bench/load.py``'s texts, none predicted twice) go through
``predict`` a chunk at a time; the CPU time of this thread (``time.thread_time``) over each size's
texts is printed per complaint. One client's request is a chunk of one: what it pays above a chunk
of 64 is work done once per call whatever the number of complaints (checks, matrix construction,
small numpy and scipy calls), not per complaint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # bench/load.py: texts

from triage.prediction import predict
from triage.serving import ModelHolder

SIZES = (1, 8, 64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(load.REPO / "models"))
    ap.add_argument("--data", default=str(load.REPO.parent / "shared" / "data"))
    ap.add_argument("--texts", type=int, default=400, help="complaints per chunk size and run")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    texts = load.complaint_texts(Path(a.data))
    need = a.texts * len(SIZES) * a.repeat
    if len(texts) < need:
        sys.exit(f"bench: {len(texts)} distinct texts, {need} needed; lower --texts")
    served = ModelHolder(Path(a.models) / "current").reload()
    print(f"model {served.model.version}; {a.texts} distinct complaints a size and run; "
          f"load average {os.getloadavg()[0]:.2f}")
    at = 0
    for run in range(1, a.repeat + 1):
        line = []
        for size in SIZES:
            part, at = texts[at:at + a.texts], at + a.texts
            t0 = time.thread_time()
            for i in range(0, len(part), size):
                chunk = part[i:i + size]
                predict(served.model, chunk, ["บางรัก"] * len(chunk), served.router)
            line.append(f"chunks of {size}: {1000 * (time.thread_time() - t0) / len(part):.3f}")
        print(f"run {run}: " + ", ".join(line) + f" ms CPU a complaint; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
