"""Reviewers' corrections as training data: export from the case store, read back for ``train.py``.

    python -m triage export-corrections --out data/corrections.csv

The file has one row per corrected case: ``id`` (the intake system's external_id, so a
correction replaces the original training row of the same ticket, or ``case-<n>``), ``text``
with personal data masked, and the labels reviewers set: ``topic`` (``|``-separated), ``urgency``,
``agency`` (``|``-separated). A label a reviewer never touched is left empty: the model's own
guess is not training data.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from triage.database import open_store
from triage.errors import DataError, TriageError, exit_code
from triage.store import Store
from triage.text import mask_personal

COLUMNS = ("id", "text", "topic", "urgency", "agency", "district", "corrected_at")


def corrected_rows(store: Store) -> Iterator[dict[str, Any]]:
    """One training row per corrected case: the latest value reviewers gave each label."""
    for case in store.corrected_cases():
        topics = urgency = agencies = None
        last = ""
        for c in store.corrections(case["id"]):
            topics = c["topics"] if c["topics"] is not None else topics
            urgency = c["urgency"] if c["urgency"] is not None else urgency
            agencies = c["agencies"] if c["agencies"] is not None else agencies
            last = c["at"]
        yield {
            "id": case["external_id"] or f"case-{case['id']}",
            # masked again on the way out, in case the masking rules improved since the case was stored
            "text": mask_personal(case["masked_text"]),
            "topic": "|".join(topics or []),
            "urgency": urgency or "",
            "agency": "|".join(agencies or []),
            "district": case["district"] or "",
            "corrected_at": last,
        }


def agency_corrections(store: Store | None) -> pd.DataFrame | None:
    """Reviewers' agency corrections (masked text, agencies primary first) for the served agency model
    to follow at reload (``triage.serving.ModelHolder``); None without a store."""
    if store is None:
        return None
    rows = [{"id": r["id"], "text": r["text"], "agency": r["agency"]} for r in corrected_rows(store) if r["agency"]]
    return pd.DataFrame(rows, columns=["id", "text", "agency"])


def export(store: Store, out: Path) -> int:
    """Write the corrected cases to a CSV file (atomically); returns the number of rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in corrected_rows(store):
            writer.writerow(row)
            n += 1
    os.replace(tmp, out)
    return n


def read_corrections(path: str | Path) -> pd.DataFrame:
    """Read an exported corrections file into the frame ``TrainOptions.corrections`` takes.

    Columns id, text, topic (list), urgency (or None), agency ("|"-separated), district, time. Corrections are training
    rows only: their time is empty, which sorts before every split boundary, so they never enter
    the validation or test part and the held-out set stays the one the current model was scored on.
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read corrections file {path}: {exc}") from exc
    missing = [c for c in ("id", "text", "topic", "urgency") if c not in raw.columns]
    if missing:
        raise DataError(f"corrections file {path} lacks column(s) {missing}; it has: {', '.join(raw.columns)}")
    return pd.DataFrame({
        "id": raw["id"],
        "text": raw["text"],
        "time": "",
        "district": raw["district"].replace("", None) if "district" in raw.columns else None,
        "topic": [[t for t in v.split("|") if t] for v in raw["topic"]],
        "urgency": raw["urgency"].replace("", None),
        # reviewers' agencies, "|"-separated, primary first: what the learned agency model learns from
        "agency": raw["agency"] if "agency" in raw.columns else "",
    })


def main(argv: list[str] | None = None) -> int:
    """``export-corrections``: write the corrected cases as a training file. Exit 0, or ``triage.errors.exit_code``."""
    ap = argparse.ArgumentParser(prog="python -m triage export-corrections", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="CSV file to write (default: <TRIAGE_DATA_DIR>/corrections.csv)")
    ap.add_argument("--database", default=None, help="database URL (default: TRIAGE_DATABASE_URL or "
                                                     "sqlite:///<TRIAGE_DATA_DIR>/triage.db)")
    args = ap.parse_args(argv)
    from triage.config import Settings

    try:
        settings = Settings()
        store = open_store(args.database or settings.database)
        out = Path(args.out) if args.out else settings.data_dir / "corrections.csv"
        try:
            n = export(store, out)
        finally:
            store.close()
    except TriageError as exc:
        print(f"export-corrections: {exc}", file=sys.stderr)
        return exit_code(exc)
    print(f"wrote {n} corrected cases to {out} (personal data masked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
