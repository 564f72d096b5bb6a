"""10,000 complaints in one batch through the CLI, with routing: wall clock and CPU of the whole command.

    python bench/cli_batch.py [--model models/current] [--data ../shared/data] [--rows 10000] [--runs 2]
                              [--repo DIR] [--keep OUT.jsonl] [--compare OTHER.jsonl]

Writes --rows distinct real complaints (with their districts) of the last two Traffy months to a
temporary Parquet file and runs ``python -m triage predict --district-column district --quiet``
on it as a new process, as a user would (start-up, imports, model load, reading, prediction in
the default worker processes, writing). Prints the wall-clock time, the CPU time of the command
and its workers (user + system) and the load average around each run: on a shared machine the
wall clock depends on what else runs, the CPU time much less.

``--repo`` runs another checkout's code (e.g. a ``git archive`` of main) with the same rows, for
alternating runs; ``--keep`` saves the last run's output; ``--compare`` checks that every output line
holds the same JSON value (parsed: key order, spacing and escapes may differ) as an earlier run's
kept output, and prints how many lines differ.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def complaint_rows(data: Path, rows: int) -> pd.DataFrame:
    """``rows`` distinct real complaints with their districts, of the last two Traffy months (always the same ones)."""
    months = sorted(Path(data, "traffy").glob("*.parquet"))[-2:]
    frame = pd.concat([pd.read_parquet(m, columns=["comment", "district"]) for m in months])
    frame = frame.dropna(subset=["comment"]).drop_duplicates("comment")
    return frame.sample(min(rows, len(frame)), random_state=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "current"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--jobs", default=None, help="passed on as --jobs (default: the CLI's, one per core)")
    ap.add_argument("--repo", default=str(REPO), help="the checkout whose code runs (the command's working folder)")
    ap.add_argument("--keep", default=None, help="copy the last run's output here")
    ap.add_argument("--compare", default=None, help="compare each run's output, value by value, with this file")
    a = ap.parse_args()
    frame = complaint_rows(Path(a.data), a.rows)
    with tempfile.TemporaryDirectory(prefix="triage-cli-bench-") as tmp:
        inp, out = Path(tmp) / "in.parquet", Path(tmp) / "out.jsonl"
        frame.to_parquet(inp)
        cmd = [sys.executable, "-m", "triage", "predict", "--model", a.model, "--input", str(inp), "--output", str(out),
               "--district-column", "district", "--quiet", *(["--jobs", a.jobs] if a.jobs else [])]
        print(f"{len(frame)} distinct complaints; {os.cpu_count()} CPUs; " + " ".join(cmd[1:4]) + " ...")
        for run in range(a.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, cwd=a.repo, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return res.returncode
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            lines = out.read_text(encoding="utf-8").count("\n")
            print(f"run {run + 1}: {lines} rows in {wall:.1f} s wall, {cpu:.1f} s CPU (user + system, with its workers); "
                  f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
            if a.compare:
                print(compare(out, Path(a.compare)), flush=True)
        if a.keep:
            shutil.copyfile(out, a.keep)
    return 0


def compare(out: Path, other: Path) -> str:
    """How many lines of two JSONL outputs hold different JSON values (parsed, so formatting does not count)."""
    mine = out.read_text(encoding="utf-8").split("\n")
    theirs = other.read_text(encoding="utf-8").split("\n")
    if len(mine) != len(theirs):
        return f"  output differs from {other}: {len(mine) - 1} lines against {len(theirs) - 1}"
    differ = sum(1 for x, y in zip(mine, theirs) if (json.loads(x) if x else None) != (json.loads(y) if y else None))
    same = "identical to" if not differ else f"{differ} lines differ from"
    return f"  output values {same} {other} ({len(mine) - 1} lines, parsed JSON compared)"


if __name__ == "__main__":
    sys.exit(main())
