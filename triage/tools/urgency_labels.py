"""Merge urgency labels made by reading (issue #12) and measure agreement on a blind re-label.

    python -m triage.tools.urgency_labels merge --sample labels/urgency-sample.csv \
        --labels /path/labels-chunk1.csv ... --out labels/urgency-2022.csv
    python -m triage.tools.urgency_labels agreement --first labels/urgency-2022.csv \
        --second labels/urgency-blind.csv
    python -m triage.tools.urgency_labels blind --sample labels/urgency-sample-2.csv --n 100 \
        --seed 20261205 --data ../shared/data --texts /tmp/DIR

``merge`` joins the labellers' files (ticket_id, urgency, reason) to the sample's strata and
refuses unknown levels, empty reasons, duplicates and ids outside the sample. ``agreement``
prints Cohen's kappa (plain and linearly weighted, low < medium < high), the confusion table and
the agreement on "high or not", for the tickets both files label. ``blind`` draws ``--n`` rows at random (recorded seed) from a
*draw* file (``ticket_id`` only is read, never labels) and writes their texts, cut at 1,200 characters,
to a folder outside the repository, so that a second labeller can label them without seeing the first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LEVELS = ["low", "medium", "high"]


def read_labels(paths: list[Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    missing = {"ticket_id", "urgency", "reason"} - set(df.columns)
    if missing:
        raise SystemExit(f"label files lack columns: {', '.join(sorted(missing))}")
    df["urgency"] = df["urgency"].str.strip().str.lower()
    df["reason"] = df["reason"].str.strip()
    bad = df[~df["urgency"].isin(LEVELS)]
    if len(bad):
        raise SystemExit(f"{len(bad)} rows with an urgency not in {LEVELS}: {bad['ticket_id'].head().tolist()}")
    if (df["reason"] == "").any():
        raise SystemExit(f"{int((df['reason'] == '').sum())} rows without a reason")
    dup = df[df["ticket_id"].duplicated()]
    if len(dup):
        raise SystemExit(f"{len(dup)} duplicated ticket ids: {dup['ticket_id'].head().tolist()}")
    return df[["ticket_id", "urgency", "reason"]]


def merge(sample: Path, labels: list[Path], out: Path) -> pd.DataFrame:
    s = pd.read_csv(sample, dtype=str, keep_default_na=False)
    lab = read_labels(labels)
    stray = set(lab["ticket_id"]) - set(s["ticket_id"])
    if stray:
        raise SystemExit(f"{len(stray)} labelled ids are not in the sample, e.g. {sorted(stray)[:3]}")
    df = s.merge(lab, on="ticket_id", how="inner")
    df.to_csv(out, index=False)
    print(f"{len(df)} of {len(s)} sampled tickets labelled -> {out}")
    print(pd.crosstab(df["stratum"].str.replace(r"topic:.*", "topic", regex=True), df["urgency"], margins=True))
    return df


def agreement(first: Path, second: Path) -> dict[str, float]:
    from sklearn.metrics import cohen_kappa_score

    a = pd.read_csv(first, dtype=str, keep_default_na=False).set_index("ticket_id")["urgency"]
    b = pd.read_csv(second, dtype=str, keep_default_na=False).set_index("ticket_id")["urgency"]
    ids = a.index.intersection(b.index)
    a, b = a.loc[ids], b.loc[ids]
    kappa = cohen_kappa_score(a, b, labels=LEVELS)
    weighted = cohen_kappa_score(a, b, labels=LEVELS, weights="linear")
    high = cohen_kappa_score(a == "high", b == "high")
    print(f"{len(ids)} tickets labelled twice; raw agreement {float((a == b).mean()):.3f}")
    print(f"Cohen's kappa {kappa:.3f}; linearly weighted {weighted:.3f}; high vs not high {high:.3f}")
    print(pd.crosstab(a.rename("first"), b.rename("second"), margins=True))
    return {"n": len(ids), "kappa": kappa, "weighted": weighted, "high": high}


BLIND_SEED = 20261205
MAX_CHARS = 1200


def draw_blind(sample: Path, n: int, seed: int = BLIND_SEED) -> list[str]:
    """``n`` ticket ids drawn uniformly from ``sample`` (only its ``ticket_id`` column is read), sorted."""
    ids = pd.read_csv(sample, dtype=str, keep_default_na=False, usecols=["ticket_id"])["ticket_id"].tolist()
    if n > len(ids):
        raise SystemExit(f"cannot draw {n} of {len(ids)} rows")
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{sample} has duplicated ticket ids")
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(pick)]


def write_blind_texts(ids: list[str], data: Path, out: Path) -> Path:
    """The drawn tickets' texts (cut at MAX_CHARS) in ``out/blind.tsv``; never point ``out`` into the repo."""
    import re

    frames = [pd.read_parquet(p, columns=["ticket_id", "comment", "type_labels"])
              for p in sorted((data / "traffy").glob("traffy-*.parquet"))]
    df = pd.concat(frames, ignore_index=True).drop_duplicates("ticket_id").set_index("ticket_id")
    missing = [t for t in ids if t not in df.index]
    if missing:
        raise SystemExit(f"{len(missing)} drawn ids are not in {data / 'traffy'}, e.g. {missing[:3]}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "blind.tsv"
    with path.open("w", encoding="utf-8") as f:
        f.write("ticket_id\ttype_labels\tcomment\n")
        for t in ids:
            text = re.sub(r"\s+", " ", str(df.at[t, "comment"] or "")).strip()
            if len(text) > MAX_CHARS:
                text = text[:MAX_CHARS] + " …[cut]"
            f.write(f"{t}\t{df.at[t, 'type_labels'] or ''}\t{text}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge")
    m.add_argument("--sample", type=Path, default=Path("labels/urgency-sample.csv"))
    m.add_argument("--labels", type=Path, nargs="+", required=True)
    m.add_argument("--out", type=Path, default=Path("labels/urgency-2022.csv"))
    g = sub.add_parser("agreement")
    g.add_argument("--first", type=Path, default=Path("labels/urgency-2022.csv"))
    g.add_argument("--second", type=Path, default=Path("labels/urgency-blind.csv"))
    b = sub.add_parser("blind", help="draw rows of a draw file at random for a blind re-label")
    b.add_argument("--sample", type=Path, default=Path("labels/urgency-sample-2.csv"))
    b.add_argument("--n", type=int, default=100)
    b.add_argument("--seed", type=int, default=BLIND_SEED)
    b.add_argument("--data", type=Path, default=Path("../shared/data"))
    b.add_argument("--texts", type=Path, help="write the drawn texts here (never in the repo)")
    args = ap.parse_args(argv)
    if args.cmd == "merge":
        merge(args.sample, args.labels, args.out)
    elif args.cmd == "blind":
        ids = draw_blind(args.sample, args.n, args.seed)
        print(f"{len(ids)} of the rows of {args.sample} drawn (seed {args.seed})")
        if args.texts:
            print(f"texts -> {write_blind_texts(ids, args.data, args.texts)}")
        else:
            print("\n".join(ids))
    else:
        agreement(args.first, args.second)
    return 0


if __name__ == "__main__":
    sys.exit(main())
