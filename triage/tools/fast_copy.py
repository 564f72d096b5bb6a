"""Give a saved model version its fast copy (``model.pkl``), for versions saved before issue 9.

    python -m triage.tools.fast_copy models/current

Checks the version as ``registry.load`` does, writes the plain pickle beside ``model.joblib`` and
records its checksum in ``metadata.json`` (``triage.registry.add_fast_copy``). Loading it then
takes about a fifth of the time (the CLI and each server worker load the model at start).
"""

from __future__ import annotations

import argparse
import sys
import time

from triage import registry
from triage.errors import TriageError, exit_code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m triage.tools.fast_copy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a version folder or models/current")
    args = ap.parse_args(argv)
    try:
        path = registry.add_fast_copy(args.model)
        t0 = time.perf_counter()
        registry.load(args.model)
    except TriageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    print(f"wrote {path}; the model now loads in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
