"""Draw the 2022 tickets to label for urgency (issue #12), stratified and recorded per row.

Three strata, each drawn per month from 2022 tickets with a unique, non-empty text that are not
already in ``urgency/traffy-urgency.csv``:

- ``random``: a uniform draw of up to 200 tickets per month (every month covered);
- ``enriched``: up to 160 per month from tickets whose topic or text suggests danger (topics of
  the rubric's high list, or a broad hazard word taken from the rubric, not from labelled tickets);
- ``topic``: up to 15 per topic label over the whole year, so rare topics are covered.

Each row records its stratum, the size of the pool it was drawn from (``pool``) and how many were
drawn from it (``drawn``): the inclusion probability within the stratum is drawn / pool, so
prevalence estimates can be reweighted. A ticket drawn by an earlier stratum is not drawn again.

    python -m triage.tools.sample_urgency --data ../shared/data --out labels/urgency-sample.csv \
        [--texts DIR]   # also write the texts, in chunks, to DIR (outside the repository)

A second round (issue 12, fourth round) draws a ``cue`` stratum: up to ``--cue-per-month`` tickets a
month (before ``--before``) whose text matches a danger (``kind = "high"``) regular-expression group
of ``triage/resources/urgency_lexicon.toml``, leaving out every ticket of ``--exclude`` (the first
draw) as well as the shared labels; its own seed, pool and drawn per row as above:

    python -m triage.tools.sample_urgency --data ../shared/data --round 2 \
        --exclude labels/urgency-sample.csv --out labels/urgency-sample-2.csv --texts DIR
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20261201
RANDOM_PER_MONTH = 200
ENRICHED_PER_MONTH = 160
PER_TOPIC = 15
MAX_CHARS = 1200  # longer texts are shown cut to the labellers
BLIND = 200  # re-labelled blind for agreement

DANGER_TOPICS = {"สายไฟ", "ความปลอดภัย", "ต้นไม้", "น้ำท่วม", "สะพาน", "จราจร", "ท่อระบายน้ำ"}
# Hazard objects and states named by the rubric (RUBRIC.md), deliberately broad.
DANGER_WORDS = re.compile(
    "อันตราย|ไฟไหม้|ไฟช็อต|ช็อต|ชอต|ประกายไฟ|ล้ม|หัก|โค่น|ถล่ม|ยุบ|ทรุด|ฝาท่อ|หลุม|แก๊ส|ควัน|"
    "บาดเจ็บ|อุบัติเหตุ|ชน|น้ำเข้าบ้าน|ท่วม|ไฟจราจร|สัญญาณไฟ|ขาด|ห้อย|เอียง|งู|จระเข้|หมากัด|สุนัขกัด|"
    "ทำร้าย|หมดสติ|ป่วย|เด็ก"
)


def load(data: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((data / "traffy").glob("traffy-2022-*.parquet"))]
    df = pd.concat(frames, ignore_index=True)
    df["comment"] = df["comment"].fillna("").astype(str)
    df["type_labels"] = df["type_labels"].fillna("").astype(str)
    df["month"] = df["timestamp"].astype(str).str[:7]
    done = set(pd.read_csv(data / "urgency" / "traffy-urgency.csv")["ticket_id"])
    df = df[~df["ticket_id"].isin(done) & (df["comment"].str.strip() != "")]
    return df.drop_duplicates("comment").reset_index(drop=True)


def draw(df: pd.DataFrame) -> list[dict[str, object]]:
    rng = np.random.default_rng(SEED)
    rows: list[dict[str, object]] = []
    taken: set[str] = set()

    def take(pool: pd.DataFrame, n: int, stratum: str) -> None:
        pool = pool[~pool["ticket_id"].isin(taken)]
        k = min(n, len(pool))
        if k == 0:
            return
        idx = rng.choice(len(pool), size=k, replace=False)
        for _, r in pool.iloc[np.sort(idx)].iterrows():
            taken.add(r["ticket_id"])
            rows.append({"ticket_id": r["ticket_id"], "month": r["month"], "stratum": stratum,
                         "pool": len(pool), "drawn": k})

    labels = df["type_labels"].str.split("|")
    danger = labels.map(lambda ls: bool(DANGER_TOPICS & set(ls))) | df["comment"].str.contains(DANGER_WORDS)
    for month in sorted(df["month"].unique()):
        take(df[df["month"] == month], RANDOM_PER_MONTH, "random")
    for month in sorted(df["month"].unique()):
        take(df[(df["month"] == month) & danger], ENRICHED_PER_MONTH, "enriched")
    topics = sorted({t for ls in labels for t in ls if t})
    for topic in topics:
        take(df[labels.map(lambda ls, t=topic: t in ls)], PER_TOPIC, f"topic:{topic}")
    return rows


SEED_ROUND2 = 20261204
CUE_PER_MONTH = 50


def draw_cue(df: pd.DataFrame, exclude: set[str], per_month: int, before: str,
             seed: int = SEED_ROUND2) -> list[dict[str, object]]:
    """The ``cue`` stratum: per month before ``before``, up to ``per_month`` tickets (not in ``exclude``)
    whose text matches one of the lexicon's danger regex groups; pool = that month's matching tickets."""
    from triage.model import Lexicon
    from triage.text import normalize_many

    lexicon = Lexicon.load()
    danger = [pat for name, pat in zip(lexicon.groups, lexicon.compiled) if lexicon.kinds[name] == "high"]
    df = df[~df["ticket_id"].isin(exclude) & (df["month"] < before)].reset_index(drop=True)
    norm = normalize_many(df["comment"].tolist())
    hit = pd.Series([any(p.search(t) for p in danger) for t in norm], index=df.index)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for month in sorted(df["month"].unique()):
        pool = df[(df["month"] == month) & hit]
        k = min(per_month, len(pool))
        if k == 0:
            continue
        for _, r in pool.iloc[np.sort(rng.choice(len(pool), size=k, replace=False))].iterrows():
            rows.append({"ticket_id": r["ticket_id"], "month": month, "stratum": "cue", "pool": len(pool), "drawn": k})
    return rows


def write_texts(df: pd.DataFrame, rows: list[dict[str, object]], out: Path, chunks: int, seed: int) -> None:
    """The rows' texts (cut at MAX_CHARS), strata mixed, in ``chunks`` files under ``out`` (never the repo)."""
    out.mkdir(parents=True, exist_ok=True)
    by_id = df.set_index("ticket_id")
    order = np.random.default_rng(seed).permutation(len(rows))
    for c in range(chunks):
        with (out / f"chunk{c + 1}.tsv").open("w", encoding="utf-8") as f:
            f.write("ticket_id\ttype_labels\tcomment\n")
            for i in order[c::chunks]:
                t = by_id.loc[rows[i]["ticket_id"]]
                text = re.sub(r"\s+", " ", t["comment"]).strip()
                if len(text) > MAX_CHARS:
                    text = text[:MAX_CHARS] + " …[cut]"
                f.write(f"{rows[i]['ticket_id']}\t{t['type_labels']}\t{text}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("labels/urgency-sample.csv"))
    ap.add_argument("--texts", type=Path, help="write ticket texts in chunks here (never in the repo)")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--round", type=int, choices=(1, 2), default=1, help="2: the cue stratum (see above)")
    ap.add_argument("--exclude", type=Path, nargs="*", default=[], help="samples whose tickets are not drawn again")
    ap.add_argument("--cue-per-month", type=int, default=CUE_PER_MONTH)
    ap.add_argument("--before", default="2022-12", help="round 2: months before this one (the frozen month)")
    args = ap.parse_args(argv)
    df = load(args.data)
    if args.round == 2:
        exclude = {t for p in args.exclude for t in pd.read_csv(p, dtype=str)["ticket_id"]}
        rows = draw_cue(df, exclude, args.cue_per_month, args.before)
        if not rows:
            raise SystemExit("no ticket matches a danger cue in the months asked for")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(f"{len(rows)} tickets -> {args.out}")
        if args.texts:
            write_texts(df, rows, args.texts, args.chunks, SEED_ROUND2 + 1)
            print(f"texts in {args.chunks} chunks under {args.texts}")
        return 0
    rows = draw(df)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} tickets -> {args.out}")
    if args.texts:
        args.texts.mkdir(parents=True, exist_ok=True)
        by_id = df.set_index("ticket_id")
        order = np.random.default_rng(SEED + 1).permutation(len(rows))  # strata mixed in each chunk
        for c in range(args.chunks):
            part = [rows[i] for i in order[c :: args.chunks]]
            with (args.texts / f"chunk{c + 1}.tsv").open("w", encoding="utf-8") as f:
                f.write("ticket_id\ttype_labels\tcomment\n")
                for r in part:
                    t = by_id.loc[r["ticket_id"]]
                    text = re.sub(r"\s+", " ", t["comment"]).strip()
                    if len(text) > MAX_CHARS:
                        text = text[:MAX_CHARS] + " …[cut]"
                    f.write(f"{r['ticket_id']}\t{t['type_labels']}\t{text}\n")
        blind = np.random.default_rng(SEED + 2).choice(len(rows), size=min(BLIND, len(rows)), replace=False)
        with (args.texts / "blind.tsv").open("w", encoding="utf-8") as f:
            f.write("ticket_id\ttype_labels\tcomment\n")
            for i in sorted(blind):
                t = by_id.loc[rows[i]["ticket_id"]]
                text = re.sub(r"\s+", " ", t["comment"]).strip()[:MAX_CHARS]
                f.write(f"{rows[i]['ticket_id']}\t{t['type_labels']}\t{text}\n")
        print(f"texts in {args.chunks} chunks and {BLIND} blind re-labels under {args.texts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
