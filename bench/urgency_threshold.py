"""How the urgency head's high threshold is chosen, compared on data BEFORE the frozen month.

    python bench/urgency_threshold.py --model models/current --data ../shared/data

Two evaluations, both on the urgency-labelled tickets before ``[split] urgency_frozen_from``
(2022-12 is never loaded):

- time-ordered: the head (its word columns, character n-grams, weights, threshold and medium/low
  boundary) is fitted on the tickets before ``--valid-month`` and scored on that month;
- cross-validation: 5 outer folds over all of them, each choosing its threshold on inner
  out-of-fold scores, as ``train.py`` does.

For each C of the logistic regression (``--C``), the threshold rules: the cost rule (a missed high =
``HIGH_MISS_COST`` false alarms) and "flag a share" (``--shares``: the out-of-fold score above which
that share of the training rows falls). Prints recall and precision of high, the share flagged,
macro-F1, and the same on the random stratum reweighted by pool/drawn. Topic probabilities from
``--model``. Rows of the ``cue`` stratum (``triage.training.SHARE_LEFT_OUT``) are trained on but the
flagged share is not counted on them (``--share-on-all`` counts it on every row, the rule before) and
they are scored apart, so the lines compare with the rounds before them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from triage import registry
from triage.model import Lexicon, UrgencyHead, analyze_words
from triage.training import URGENCY_LEVELS, _sampling_design, _urgency_design, _urgency_reports, share_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from urgency_cues import labelled_before_frozen, labelled_bench_args  # noqa: E402  (bench/urgency_cues.py: the same tickets)


def _rules(shares: list[float]) -> list[tuple[str, float | None]]:
    return [("cost rule", None)] + [(f"flag {s:.0%}", s) for s in shares]


def _fit_and_decide(Z: Any, y: np.ndarray, tr: np.ndarray, te: np.ndarray, head: UrgencyHead,
                    shares: list[float], counted: np.ndarray | None = None) -> dict[str, list[str]]:
    """Fit on ``tr``; per threshold rule, the decisions on ``te`` (the inner out-of-fold fits are shared).
    ``counted``: per row of Z, whether the flagged share is counted on it (None: every row)."""
    with threadpool_limits(1, "blas"):
        fold = UrgencyHead(list(URGENCY_LEVELS), head.lexicon, C=head.C, word_cols_=head.word_cols_)
        oof = fold.out_of_fold(Z[tr], y[tr], 0)
        score = fold.high_score(oof, fold.high_cue(Z[tr]))
        fold.clf_ = fold._fit_clf(Z[tr], y[tr])
        P = fold.proba(Z[te])
        out = {}
        for name, share in _rules(shares):
            fold.high_share = share
            fold.high_threshold_ = fold._choose_threshold((y[tr] == "high").astype(int), score,
                                                          None if counted is None else counted[tr])
            mix = slice(None) if counted is None else counted[tr]
            fold.low_bias_ = fold._choose_low_bias(y[tr][mix], oof[mix], (score >= fold.high_threshold_)[mix])
            out[name] = fold.decide(P, Z[te])
    return out


def _line(name: str, reports: dict[str, Any]) -> str:
    a = reports["all"]
    text = (f"  {name:12s} recall {a['high_recall']:.3f} precision {a['high_precision']:.3f} "
            f"flagged {a['flagged_high_share']:.3f} macro-F1 {a['macro_f1']:.3f}")
    if "random_reweighted" in reports:
        r = reports["random_reweighted"]
        text += f" | random, reweighted: {r['high_recall']:.3f} / {r['flagged_high_share']:.3f} / {r['macro_f1']:.3f}"
    return text


def main() -> None:
    ap = labelled_bench_args(__doc__)
    ap.add_argument("--valid-month", default="2022-11")
    ap.add_argument("--C", type=float, nargs="+", default=[0.5])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.16, 0.17, 0.18, 0.19])
    ap.add_argument("--no-cv", action="store_true", help="the time-ordered evaluation only")
    ap.add_argument("--share-on-all", action="store_true", help="count the flagged share on every row (the cue stratum too)")
    args = ap.parse_args()
    threadpool_limits(1, "blas")
    started = time.perf_counter()
    config, rows, frozen_from = labelled_before_frozen(args.config, args.data)
    norm = rows["norm"].tolist()
    y = rows["urgency"].to_numpy()
    strata = _sampling_design(config, rows)
    counted = None if args.share_on_all else share_rows(strata, len(rows))
    scored = np.ones(len(rows), dtype=bool) if counted is None else counted  # the cue stratum is scored apart
    model, _meta = registry.load(args.model)
    analyzed = analyze_words(norm)
    times = rows["time"].astype(str)
    early = (times < args.valid_month).to_numpy()
    later = np.flatnonzero((times >= args.valid_month).to_numpy() & scored)
    print(f"{len(y)} labelled tickets before {frozen_from} ({int((y == 'high').sum())} high; scored on the "
          f"{int(scored.sum())} outside the cue stratum); time-ordered: {int(early.sum())} before {args.valid_month}, "
          f"{len(later)} in it scored ({int((y[later] == 'high').sum())} high); flagged share counted on "
          f"{'every row' if counted is None else 'the rows outside the cue stratum'}")
    for C in args.C:
        head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load(), C=C)
        Z = _urgency_design(model, head, norm, analyzed, early)  # columns from the earlier tickets only
        decided = _fit_and_decide(Z, y, np.flatnonzero(early), later, head, args.shares, counted)
        sub = strata.iloc[later].reset_index(drop=True) if strata is not None else None
        print(f"[{time.perf_counter() - started:5.0f}s] C={C:g}, time-ordered: fitted before {args.valid_month}, "
              f"scored on it", flush=True)
        for name, _share in _rules(args.shares):
            print(_line(name, _urgency_reports(y[later], decided[name], sub)))
        if args.no_cv:
            continue
        head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load(), C=C)
        Z = _urgency_design(model, head, norm, analyzed)
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
        parts = Parallel(n_jobs=2)(delayed(_fit_and_decide)(Z, y, tr, te, head, args.shares, counted)
                                   for tr, te in folds)
        print(f"[{time.perf_counter() - started:5.0f}s] C={C:g}, nested 5-fold cross-validation", flush=True)
        for name, _share in _rules(args.shares):
            pred = np.empty(len(y), dtype=object)
            for (_tr, te), part in zip(folds, parts):
                pred[te] = part[name]
            sub = strata[scored].reset_index(drop=True) if strata is not None else None
            print(_line(name, _urgency_reports(y[scored], list(pred[scored]), sub)))


if __name__ == "__main__":
    main()
