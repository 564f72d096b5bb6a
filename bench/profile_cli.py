"""Where the CLI's batch prediction spends its time: py-spy samples of the whole command, per part.

    python bench/profile_cli.py [--model models/current] [--data ../shared/data] [--rows 10000] [--jobs 1]

Writes ``--rows`` distinct real complaints with their districts (as ``bench/cli_batch.py`` does, the
same rows) to a temporary Parquet file and runs ``python -m triage predict --district-column
district --quiet`` under ``py-spy record`` (with ``--subprocesses`` when ``--jobs`` is not 1, so
the worker processes are sampled too). Each sample goes to the first part in the list below
whose mark is anywhere in its stack (so tokenising inside the agency model counts as tokenising),
and the parts are printed as seconds of samples and as milliseconds per complaint. With one job
every sample is the one process's; samples count while a thread runs or waits for a core, so on
a loaded machine every part grows: compare runs made at the same load. Needs py-spy
(``pip install py-spy``) and the right to trace a child process.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_batch import REPO, complaint_rows  # noqa: E402  (bench/cli_batch.py: the same rows)

IDLE = ("TMonitor.run",)
"""Waiting threads py-spy still samples (tqdm's monitor thread): left out of every part and of the total."""

PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("imports", ("_find_and_load",)),
    ("tokenising (nlpo3)", ("_tokens (triage/text.py", "_dictionary (triage/text.py")),
    ("normalising", ("normalize_many (", "normalize (triage/text.py")),
    ("model load (unpickle, checksums)", ("load (triage/registry.py", "load_light (triage/")),
    ("router load", ("Router.load",)),
    ("reading the input", ("iter_chunks", "count_rows")),
    ("agency model (strip, TF-IDF, 2 LR)", ("BatchKinds.__init__", "agency_proba")),
    ("urgency cues (lexicon, hazards)", ("Lexicon.matches", "Lexicon.", "HazardCues.")),
    ("urgency character block", ("FastCharTfidf",)),
    ("word TF-IDF (counting, lookup)", ("FastTfidf.", "Analyses.__call__", "transform (triage/fastpath.py")),
    ("topic head", ("TopicHead.",)),
    ("urgency design + head", ("UrgencyHead.",)),
    ("explanation", ("TriageModel.explain", "_word_names")),
    ("routing rules (table_kinds)", ("Router.table_kinds", "Rule.match")),
    ("routing (rest)", ("Router.", "Directory.", "Places.", "BatchKinds.", "route_many")),
    ("prediction records", ("TriageModel.predict",)),
    ("JSON lines", ("predict_lines", "output_line", "json/encoder", "dumps")),
    ("writing", ("predict_file",)),
    ("worker processes (IPC, pickling)", ("multiprocessing", "concurrent/futures", "_predict_part")),
]


def part_of(stack: str) -> str:
    for name, marks in PARTS:
        if any(m in stack for m in marks):
            return name
    return "other"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "current"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--jobs", default="1", help="passed on as --jobs (1: one process, the cleanest profile)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--raw", default=None, help="also keep py-spy's raw (collapsed) stacks in this file")
    ap.add_argument("--parts-of", default=None, help="only print the parts of an earlier run's --raw file")
    a = ap.parse_args()
    if a.parts_of:
        print_parts(Path(a.parts_of).read_text(encoding="utf-8"), a.rate, a.rows)
        return 0
    frame = complaint_rows(Path(a.data), a.rows)
    exe = Path(sys.executable).parent / "py-spy"
    with tempfile.TemporaryDirectory(prefix="triage-cli-profile-") as tmp:
        inp, out = Path(tmp) / "in.parquet", Path(tmp) / "out.jsonl"
        raw = Path(a.raw) if a.raw else Path(tmp) / "raw.txt"
        frame.to_parquet(inp)
        cmd = [str(exe) if exe.exists() else "py-spy", "record", "--format", "raw", "--rate", str(a.rate),
               "--output", str(raw), *(["--subprocesses"] if a.jobs != "1" else []), "--",
               sys.executable, "-m", "triage", "predict", "--model", a.model, "--input", str(inp), "--output", str(out),
               "--district-column", "district", "--quiet", "--jobs", a.jobs]
        load0 = os.getloadavg()[0]
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return res.returncode
        text = raw.read_text(encoding="utf-8")
    print(f"{len(frame)} complaints, --jobs {a.jobs}; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    print_parts(text, a.rate, len(frame))
    return 0


def print_parts(raw: str, rate: int, rows: int) -> None:
    parts: collections.Counter[str] = collections.Counter()
    idle = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if any(m in stack for m in IDLE):
            idle += int(count)
        else:
            parts[part_of(stack)] += int(count)
    total = sum(parts.values())
    print(f"{total} samples at {rate}/s ({idle} of waiting threads left out)")
    print(f"{'part':40s} {'share':>6s} {'seconds':>8s} {'ms a complaint':>15s}")
    for name, n in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"{name:40s} {100 * n / total:5.1f}% {n / rate:8.2f} {1000 * n / rate / rows:15.3f}")
    print(f"{'total':40s} {100.0:5.1f}% {total / rate:8.2f} {1000 * total / rate / rows:15.3f}")


if __name__ == "__main__":
    sys.exit(main())
