"""How well variants of the urgency head RANK high tickets, on data BEFORE the frozen month.

    python bench/urgency_rank.py --model models/current --data ../shared/data [--variants ...]

For each variant, out-of-fold P(high) (5 folds over every labelled ticket before ``[split]
urgency_frozen_from``, 2022-12 never loaded) scored on the rows outside the ``cue`` stratum (the mix of
the rounds before it): AUC of high and recall of high when the top 15% / 18% / 20% are flagged; and
fitted on the tickets before ``--valid-month`` and scored on that month's rows outside the cue
stratum (AUC, recall at the top 15% / 18%). A ranking measure, independent of the threshold rule.
The design is the head's ([cues x 2, topic probabilities, length | words x 0.5 | characters x 3],
columns counted on the training rows); topic probabilities from ``--model``. Variants:

- ``shipped``: the head as trained by ``train.py`` (multinomial, class-balanced, C = 0.5);
- ``no-cue-labels``: the same without the rows of the cue stratum (the labels before the fourth round);
- ``binary``: one high-vs-rest logistic regression instead of the three-level one;
- ``C0.25`` / ``C1``: the regularisation; ``high-x2``: the balanced weight of high doubled;
- ``char-2-4``: character 2-4-grams across word boundaries (``char``, not ``char_wb``);
- ``char-wb-2-5``: character 2-5-grams inside word boundaries.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from triage import registry
from triage.model import URGENCY_CHAR_WEIGHT, Lexicon, analyze_words
from triage.training import _sampling_design, share_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from urgency_cues import labelled_before_frozen, labelled_bench_args  # noqa: E402  (bench/urgency_cues.py: the same tickets)

VARIANTS = ("shipped", "no-cue-labels", "binary", "C0.25", "C1", "high-x2", "char-2-4", "char-wb-2-5")


def _recall_at(score: np.ndarray, high: np.ndarray, share: float) -> float:
    return float(high[score >= np.quantile(score, 1 - share)].sum() / max(high.sum(), 1))


def _fit_score(Z: sparse.csr_matrix, y: np.ndarray, tr: np.ndarray, te: np.ndarray, C: float, binary: bool,
               weight: dict[str, float] | str) -> np.ndarray:
    with threadpool_limits(1, "blas"):
        target = (y[tr] == "high") if binary else y[tr]
        if binary and isinstance(weight, dict):
            weight = "balanced"
        clf = LogisticRegression(C=C, class_weight=weight, max_iter=2000).fit(Z[tr], target)
        cls = list(clf.classes_)
        return clf.predict_proba(Z[te])[:, cls.index(True if binary else "high")]


def head_blocks(model: Any, norm: list[str]) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """The urgency head's word block (all columns) and its dense block [cues x 2, topic probabilities,
    length] for the normalised texts, topic probabilities from ``model``."""
    X = model.featurize(norm, analyze_words(norm))
    W = model.word_block(X).tocsr()
    dense = sparse.csr_matrix(np.hstack([Lexicon.load().features(norm) * 2.0, model.topic.proba(X).astype(np.float32),
                                         np.array([[min(len(t), 1000) / 1000, len(t) < 20] for t in norm],
                                                  dtype=np.float32)]))
    return W, dense


def head_design(norm: list[str], W: sparse.csr_matrix, dense: sparse.csr_matrix, fit: np.ndarray,
                analyzer: str = "char_wb", ngram: tuple[int, int] = (2, 4)) -> sparse.csr_matrix:
    """The head's design [dense | words x 0.5 | characters x URGENCY_CHAR_WEIGHT], the word columns
    and the character vocabulary counted on the rows ``fit``."""
    df = np.asarray((W[np.flatnonzero(fit)] > 0).sum(axis=0)).ravel()
    vec = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram, min_df=5, sublinear_tf=True, dtype=np.float32)
    vec.fit([t for t, keep in zip(norm, fit) if keep])
    return sparse.hstack([dense, W[:, np.flatnonzero(df >= 2)] * 0.5,
                          vec.transform(norm) * np.float32(URGENCY_CHAR_WEIGHT)], format="csr")


def main() -> None:
    ap = labelled_bench_args(__doc__)
    ap.add_argument("--valid-month", default="2022-11")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = ap.parse_args()
    threadpool_limits(1, "blas")
    started = time.perf_counter()
    config, rows, frozen_from = labelled_before_frozen(args.config, args.data)
    norm = rows["norm"].tolist()
    y = rows["urgency"].to_numpy()
    high = y == "high"
    counted = share_rows(_sampling_design(config, rows), len(rows))
    scored = np.ones(len(y), dtype=bool) if counted is None else counted
    model, _meta = registry.load(args.model)
    W, dense = head_blocks(model, norm)
    early = (rows["time"].astype(str) < args.valid_month).to_numpy()
    later = ~early & scored
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    print(f"{len(y)} labelled tickets before {frozen_from} ({int(high.sum())} high), scored on the {int(scored.sum())} "
          f"outside the cue stratum ({int(high[scored].sum())} high); {args.valid_month}: {int(later.sum())} scored "
          f"({int(high[later].sum())} high)", flush=True)

    def design(fit: np.ndarray, analyzer: str = "char_wb", ngram: tuple[int, int] = (2, 4)) -> sparse.csr_matrix:
        return head_design(norm, W, dense, fit, analyzer, ngram)

    n = len(y)
    balanced = {c: n / (3 * max(int((y == c).sum()), 1)) for c in ("high", "medium", "low")}
    for name in args.variants:
        C, binary, weight, train = 0.5, False, "balanced", np.ones(n, dtype=bool)
        build: Callable[[np.ndarray], sparse.csr_matrix] = design
        if name == "no-cue-labels":
            train = scored.copy()
        elif name == "binary":
            binary = True
        elif name in ("C0.25", "C1"):
            C = float(name[1:])
        elif name == "high-x2":
            weight = {**balanced, "high": 2 * balanced["high"]}
        elif name == "char-2-4":
            build = lambda fit: design(fit, "char", (2, 4))  # noqa: E731
        elif name == "char-wb-2-5":
            build = lambda fit: design(fit, "char_wb", (2, 5))  # noqa: E731
        Z = build(train)
        parts = Parallel(n_jobs=2)(delayed(_fit_score)(Z, y, tr[train[tr]], te, C, binary, weight) for tr, te in folds)
        oof = np.zeros(n)
        for (_tr, te), s in zip(folds, parts):
            oof[te] = s
        o, h = oof[scored], high[scored]
        fit = early & train
        Ze = build(fit)
        s = _fit_score(Ze, y, np.flatnonzero(fit), np.flatnonzero(later), C, binary, weight)
        print(f"[{time.perf_counter() - started:5.0f}s] {name:14s} CV: AUC(high) {roc_auc_score(h, o):.4f} recall@15% "
              f"{_recall_at(o, h, .15):.3f} @18% {_recall_at(o, h, .18):.3f} @20% {_recall_at(o, h, .20):.3f} | "
              f"{args.valid_month}: AUC {roc_auc_score(high[later], s):.4f} recall@15% {_recall_at(s, high[later], .15):.3f} "
              f"@18% {_recall_at(s, high[later], .18):.3f}", flush=True)


if __name__ == "__main__":
    main()
