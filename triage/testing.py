"""Small real-data slices for tests and the notebook: a few hundred tickets per month of Traffy.

Tests must not train on all 192k tickets; they train once per session on a slice written here,
read from the shared data folder (``TRIAGE_SHARED_DATA``, default ``../shared/data``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Where the shared real data lives (``TRIAGE_SHARED_DATA`` or ``../shared/data`` next to the repo)."""
    return Path(os.environ.get("TRIAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def write_traffy_slice(out: Path, per_month: int = 500, seed: int = 0, data: Path | None = None) -> Path:
    """Write a Traffy slice (``per_month`` labelled tickets a month plus every urgency-labelled one).

    Returns the folder, laid out like the shared data (``traffy/``, ``urgency/``), so the shipped
    ``configs/traffy.toml`` trains on it unchanged with ``data_root=out``.
    """
    import pandas as pd  # here, not at import: the fast test tier imports this module

    data = data or shared_data_dir()
    urgency = pd.read_csv(data / "urgency" / "traffy-urgency.csv")
    wanted = set(urgency["ticket_id"])
    (out / "traffy").mkdir(parents=True, exist_ok=True)
    (out / "urgency").mkdir(parents=True, exist_ok=True)
    for path in sorted((data / "traffy").glob("*.parquet")):
        month = pd.read_parquet(path)
        labelled = month[month["type_labels"].fillna("").str.len() > 0]
        pick = labelled.sample(min(per_month, len(labelled)), random_state=seed)
        keep = pd.concat([pick, month[month["ticket_id"].isin(wanted)]]).drop_duplicates("ticket_id")
        keep.to_parquet(out / "traffy" / path.name, index=False)
    shutil.copy(data / "urgency" / "traffy-urgency.csv", out / "urgency" / "traffy-urgency.csv")
    if (data / "routing").is_dir():
        shutil.copytree(data / "routing", out / "routing", dirs_exist_ok=True)
    return out
