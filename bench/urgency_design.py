"""The urgency head's character n-gram block compared by cross-validation BEFORE the frozen month.

    python bench/urgency_design.py --model models/current --data ../shared/data --weights 0 1 3 4

For each weight of the character 2-4-gram block (0: without it), 5-fold out-of-fold P(high) of the
urgency head's logistic regression on the labelled tickets before ``[split] urgency_frozen_from``
(2022-12 is never loaded): AUC of high vs the rest and recall of high when the top 15% / 19% / 23%
are flagged (a ranking measure, independent of the threshold). Topic probabilities from ``--model``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from triage import registry
from triage.model import Lexicon, UrgencyHead, analyze_words
from triage.training import URGENCY_LEVELS, _urgency_design

sys.path.insert(0, str(Path(__file__).resolve().parent))
from urgency_cues import labelled_before_frozen, labelled_bench_args  # noqa: E402  (bench/urgency_cues.py: the same tickets)


def main() -> None:
    ap = labelled_bench_args(__doc__)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 3.0, 4.0])
    args = ap.parse_args()
    threadpool_limits(1, "blas")
    started = time.perf_counter()
    config, rows, frozen_from = labelled_before_frozen(args.config, args.data)
    norm = rows["norm"].tolist()
    y = rows["urgency"].to_numpy()
    high = y == "high"
    model, _meta = registry.load(args.model)
    head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load())
    Z = _urgency_design(model, head, norm, analyze_words(norm))
    if head.char_vec_ is None:
        raise SystemExit("the head has no character block")
    chars = head.char_vec_.transform(norm)
    base = Z[:, : Z.shape[1] - chars.shape[1]]
    print(f"{len(y)} labelled tickets before {frozen_from} ({int(high.sum())} high); design {base.shape[1]} columns "
          f"+ {chars.shape[1]} character n-grams")
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    for w in args.weights:
        design = base if w == 0 else sparse.hstack([base, chars * np.float32(w)], format="csr")
        score = np.zeros(len(y))
        for tr, te in folds:
            clf = head._fit_clf(design[tr], y[tr])
            score[te] = clf.predict_proba(design[te])[:, list(clf.classes_).index("high")]
        recall = " ".join(f"recall@{f:.0%} {high[score >= np.quantile(score, 1 - f)].sum() / high.sum():.3f}"
                          for f in (0.15, 0.19, 0.23))
        print(f"[{time.perf_counter() - started:5.0f}s] character weight {w:g}: AUC(high) "
              f"{roc_auc_score(high, score):.4f} {recall}", flush=True)


if __name__ == "__main__":
    main()
