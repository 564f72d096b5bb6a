"""Urgency cues compared by nested cross-validation on the labelled tickets BEFORE the frozen month.

    python bench/urgency_cues.py --model models/current --data ../shared/data

Variants: the regex lexicon alone with the former fixed bonus of 0.2 for a danger cue; regex plus
object+state hazards with that bonus; and with learned weights only (shipped). The tickets of
``[split] urgency_frozen_from`` (2022-12) are never loaded, so nothing here can be chosen on them.
Topic probabilities come from ``--model``. Prints recall/precision of high, share flagged, macro-F1,
on all rows and on the random stratum reweighted by pool/drawn.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold

from triage import registry
from triage.data import load_config, load_dataset
from triage.model import Lexicon, UrgencyHead, analyze_words
from triage.text import normalize_many
from triage.training import (
    URGENCY_LEVELS,
    _fold_predictions,
    _sampling_design,
    _urgency_design,
    _urgency_reports,
)


def labelled_bench_args(doc: str | None) -> argparse.ArgumentParser:
    """The options every urgency bench on these tickets takes: --model, --data, --config."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--model", default="models/current")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--config", default="configs/traffy.toml")
    return ap


def labelled_before_frozen(config_path: str, data: str) -> tuple[Any, pd.DataFrame, str]:
    """The config and the urgency-labelled tickets before ``[split] urgency_frozen_from`` (the frozen
    month is never loaded), with their normalised text in ``norm``, and that month."""
    config = load_config(config_path, data)
    frame, _ = load_dataset(config)
    frozen_from = str(config.split.get("urgency_frozen_from", "9999"))
    rows = frame[frame["urgency"].notna() & (frame["time"].astype(str) < frozen_from)].reset_index(drop=True)
    rows["norm"] = normalize_many(rows["text"].tolist())
    return config, rows, frozen_from


def main() -> None:
    ap = labelled_bench_args(__doc__)
    args = ap.parse_args()
    started = time.perf_counter()
    config, rows, frozen_from = labelled_before_frozen(args.config, args.data)
    y = rows["urgency"].to_numpy()
    strata = _sampling_design(config, rows)
    model, _meta = registry.load(args.model)
    analyzed = analyze_words(rows["norm"].tolist())
    full = Lexicon.load()
    regex_only = Lexicon(full.groups, full.kinds, None)
    print(f"{len(rows)} labelled tickets before {frozen_from}: {dict(zip(*np.unique(y, return_counts=True)))}")
    for name, lexicon, bonus in (("regex only, bonus 0.2", regex_only, 0.2), ("regex + hazards, bonus 0.2", full, 0.2),
                                 ("regex + hazards, learned weights only", full, 0.0)):
        head = UrgencyHead(list(URGENCY_LEVELS), lexicon, cue_bonus=bonus)
        Z = _urgency_design(model, head, rows["norm"].tolist(), analyzed)
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
        preds = Parallel(n_jobs=2)(delayed(_fold_predictions)(Z, y, tr, te, head, 0) for tr, te in folds)
        pred = np.empty(len(y), dtype=object)
        for (_tr, te), p in zip(folds, preds):
            pred[te] = p
        for part, m in _urgency_reports(y, list(pred), strata).items():
            print(f"[{time.perf_counter() - started:5.0f}s] {name:40s} {part:17s} recall(high) {m['high_recall']} "
                  f"precision(high) {m['high_precision']} flagged {m['flagged_high_share']} macro-F1 {m['macro_f1']}",
                  flush=True)


if __name__ == "__main__":
    main()
