"""When each step of ``python -m triage predict`` ends: the parent's clock (wall and CPU) at each step, one run.

    python bench/cli_timeline.py [--model models/current] [--data ../shared/data] [--rows 10000] [--jobs N]

Writes the rows of ``bench/cli_batch.py`` (the same ones) to a temporary Parquet file, then runs
``triage.cli.main(["predict", ...])`` in this process, as ``python -m triage`` would, and prints
seconds since this script started (wall, then this process's CPU; the workers' CPU is not in it)
when the imports are done, the model and router are loaded, the warm-up is done and the workers are
started, each chunk is written, and the command ends; then the wall clock of the whole process as
seen from outside (a second process times this one). Python's own start-up before the first mark
is not counted; the interpreter's teardown after the last one, which ``python -m triage predict``
skips, is in the outside figure.
"""

from __future__ import annotations

import sys
import time

START = time.perf_counter()


def mark(what: str) -> None:
    print(f"{time.perf_counter() - START:7.3f} s wall {time.process_time():6.3f} s CPU  {what}", file=sys.stderr, flush=True)


def run(argv: list[str]) -> int:
    import triage.cli as cli

    mark("imports done")
    import triage.parallel as parallel

    write_chunk, predict_file, pool_init = cli._write_chunk, cli.predict_file, parallel.ParallelPredict.__init__

    def chunk(*a, **k):  # type: ignore[no-untyped-def]
        out = write_chunk(*a, **k)
        mark("chunk written")
        return out

    def whole(*a, **k):  # type: ignore[no-untyped-def]
        mark("model and router loaded")
        out = predict_file(*a, **k)
        mark("all written")
        return out

    def pool(self, *a, **k):  # type: ignore[no-untyped-def]
        mark("warm-up done, workers starting")
        pool_init(self, *a, **k)

    cli._write_chunk, cli.predict_file, parallel.ParallelPredict.__init__ = chunk, whole, pool  # type: ignore[method-assign]
    return cli.main(argv)


def main() -> int:
    import argparse
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    if sys.argv[1:2] == ["--child"]:
        code = run(sys.argv[2:])
        mark("command returned")
        return code
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cli_batch import REPO, complaint_rows

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "current"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--jobs", default=None)
    a = ap.parse_args()
    frame = complaint_rows(Path(a.data), a.rows)
    with tempfile.TemporaryDirectory(prefix="triage-cli-timeline-") as tmp:
        inp = Path(tmp) / "in.parquet"
        frame.to_parquet(inp)
        cmd = [sys.executable, __file__, "--child", "predict", "--model", a.model, "--input", str(inp), "--output",
               str(Path(tmp) / "out.jsonl"), "--district-column", "district", "--quiet", *(["--jobs", a.jobs] if a.jobs else [])]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=REPO, text=True)
        print(f"{time.perf_counter() - t0:.2f} s from outside; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
