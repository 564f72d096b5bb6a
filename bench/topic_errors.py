"""Topic errors on the later months, and what the errors suggest, chosen on the validation month.

    python bench/topic_errors.py --data ../shared/data                 # per-label analysis + variants on validation
    python bench/topic_errors.py --data ../shared/data --test V1 V2     # the chosen variants on the test months
    python bench/topic_errors.py --data ../shared/data --chars 0.5:2,4:5:20000   # words + characters (any mode)

The recipe of train.py, rebuilt from its own pieces (``TopicHead``, ``recency_weights``): fitted on the
tickets before 2022-10, calibrated and thresholded on 2022-10, refitted on both, scored on
2022-11..12. Variants of the decision (how scores become labels) are compared on the validation
month by two-fold cross-fitting (calibrate on one half of 2022-10, score the other half, and the
reverse), so that no variant is scored on the rows it was tuned on; the test months are scored only
with ``--test`` and only for the variants named. The per-label analysis (precision, recall, the
labels predicted instead of a missed one) is printed for the validation month and, with ``--test``,
for the test months.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import f1_score

from triage import fastpath
from triage.data import load_config, load_dataset
from triage.learners import TOPIC_LEARNERS
from triage.model import TopicHead, analyze_words, fit_featurizer
from triage.text import normalize_many
from triage.training import _binarize, letters_key, recency_weights


def scores(Y: np.ndarray, D: np.ndarray) -> tuple[float, float]:
    present = Y.sum(axis=0) > 0
    return (float(f1_score(Y[:, present], D[:, present], average="micro", zero_division=0)),
            float(f1_score(Y[:, present], D[:, present], average="macro", zero_division=0)))


def per_label(Y: np.ndarray, D: np.ndarray, labels: list[str], title: str) -> None:
    print(f"\n{title}: label, support, predicted, precision, recall, F1, missed, false; instead of a missed one")
    rows = []
    for k, lab in enumerate(labels):
        y, d = Y[:, k].astype(bool), D[:, k].astype(bool)
        if not y.any():
            continue
        tp = int((y & d).sum())
        p, r = tp / max(d.sum(), 1), tp / y.sum()
        instead = Counter(labels[j] for i in np.flatnonzero(y & ~d) for j in np.flatnonzero(D[i] & ~Y[i].astype(bool)))
        rows.append((int((y & ~d).sum() + (d & ~y).sum()), lab, int(y.sum()), int(d.sum()), p, r,
                     2 * p * r / max(p + r, 1e-9), int((y & ~d).sum()), int((d & ~y).sum()), instead.most_common(3)))
    absent = {lab: int(D[:, k].sum()) for k, lab in enumerate(labels) if not Y[:, k].any() and D[:, k].any()}
    print(f"  labels absent here but predicted: {absent}")
    for err, lab, s, n, p, r, f, fn, fp, inst in sorted(rows, reverse=True):
        print(f"  {lab:12s} {s:6d} {n:6d}  P {p:.3f} R {r:.3f} F1 {f:.3f}  missed {fn:5d} false {fp:5d}  errors {err:5d}  "
              + ", ".join(f"{a} {c}" for a, c in inst))


def rate_threshold(y: np.ndarray, p: np.ndarray, default: float, factor: float = 1.0) -> float:
    """The threshold at which the label is predicted on ``factor`` x its true rate here (at least 5 positives)."""
    if y.sum() < 5:
        return default
    n = int(round(min(factor * y.sum(), len(y) - 1)))
    return float(np.sort(p)[::-1][max(n - 1, 0)])


def best_threshold(y: np.ndarray, p: np.ndarray, default: float, beta: float = 1.0) -> float:
    """The threshold with the best F-beta (beta 1: TopicHead's choice; beta > 1 favours recall)."""
    if y.sum() < 5:
        return default
    grid = np.linspace(0.05, 0.9, 35)
    b2 = beta * beta
    f = [(1 + b2) * float((p >= t)[y == 1].sum()) / max(float((p >= t).sum() + b2 * y.sum()), 1) for t in grid]
    return float(grid[int(np.argmax(f))])


class Decider:
    """How decision scores become labels; ``fit`` on (S, Y) of a calibration part, ``decide`` on scores."""

    def __init__(self, kind: str, learned: np.ndarray) -> None:
        self.kind, self.learned = kind, learned

    def fit(self, S: np.ndarray, Y: np.ndarray) -> Decider:
        from sklearn.linear_model import LogisticRegression

        K = S.shape[1]
        # labels with too few positives get the pooled mapping (as TopicHead.calibrate)
        self.pooled = LogisticRegression(C=1e4).fit(S.ravel().reshape(-1, 1), Y.ravel())
        self.models: list[Any] = []
        # "minpos:N": a label with fewer than N positives here keeps the pooled mapping and the pooled threshold
        least = int(self.kind.split(":")[1]) if self.kind.startswith("minpos:") else 5
        for k in range(K):
            y = Y[:, k]
            if y.sum() < least or y.sum() > len(y) - 5:
                self.models.append(None)
                continue
            parts = self.kind.split(":")
            # "stack:C": every label's score, so co-occurrence and confusions inform label k;
            # "hybrid:C:N": the same for labels with at least N positives here, Platt scaling for the others
            stack = parts[0] == "stack" or (parts[0] == "hybrid" and y.sum() >= int(parts[2]))
            Z = S if stack and self.learned[k] else S[:, k : k + 1]
            C = float(parts[1]) if Z is S else 1e4
            self.models.append((Z is S, LogisticRegression(C=C, max_iter=1000).fit(Z, y)))
        P = self.proba(S)
        default = best_threshold(Y.ravel(), P.ravel(), 0.5)
        beta = float(self.kind.split(":")[1]) if self.kind.startswith("beta:") else 1.0
        self.thr = np.array([best_threshold(Y[:, k], P[:, k], default, beta) if Y[:, k].sum() >= least else default
                             for k in range(K)])
        if self.kind == "common":  # one threshold for every label, the best for micro-F1
            self.thr[:] = default
        if self.kind.startswith("rate"):  # "rate[:F]": each label predicted on F x its rate here
            f = float(self.kind.split(":")[1]) if ":" in self.kind else 1.0
            self.thr = np.array([rate_threshold(Y[:, k], P[:, k], self.thr[k], f) for k in range(K)])
        if self.kind.startswith("mix"):  # "mix[:F]": the mean of the best-F1 and the rate threshold
            f = float(self.kind.split(":")[1]) if ":" in self.kind else 1.0
            self.thr = 0.5 * (self.thr + np.array([rate_threshold(Y[:, k], P[:, k], self.thr[k], f) for k in range(K)]))
        return self

    def proba(self, S: np.ndarray) -> np.ndarray:
        P = np.zeros(S.shape)
        for k, m in enumerate(self.models):
            if m is None:
                P[:, k] = self.pooled.predict_proba(S[:, k : k + 1])[:, 1]
                continue
            full, lr = m
            P[:, k] = lr.predict_proba(S if full else S[:, k : k + 1])[:, 1]
        return P

    def decide(self, S: np.ndarray) -> np.ndarray:
        P = self.proba(S)
        D = P >= self.thr
        D[np.arange(len(P)), P.argmax(axis=1)] = True
        return D


def oof_new_label_scores(C: float, X: Any, Y: np.ndarray, in_valid: np.ndarray, w: np.ndarray, new: list[int],
                         before_onset: np.ndarray | None = None, onset_weight: float = 1.0,
                         seed: int = 0, class_weight: str | None = None,
                         head: TopicHead | None = None) -> dict[int, np.ndarray]:
    """Out-of-fold validation scores of labels the training part never had (as calibrate_new_labels).

    ``before_onset`` (rows, labels): rows older than the label's first use; they weigh ``onset_weight``
    in that label's fit (1: as train.py; they are negatives only because the label did not exist yet).
    """
    from sklearn.svm import LinearSVC

    half = np.random.default_rng(seed).integers(0, 2, size=len(Y))
    X = X.astype(np.float64)
    out = {}
    for k in new:
        s = np.zeros(int(in_valid.sum()))
        wk = w.copy()
        if before_onset is not None:
            wk[before_onset[:, k]] *= onset_weight
        for f in (0, 1):
            rows = ~(in_valid & (half == f)) & (wk > 0)
            est = LinearSVC(C=C, class_weight=class_weight) if head is None else head._estimator(seed)
            svc = est.fit(X[rows], Y[rows, k], sample_weight=wk[rows])
            s[half[in_valid] == f] = np.asarray(X[in_valid & (half == f)] @ np.ravel(svc.coef_) + svc.intercept_[0])
        out[k] = s
    return out


def char_vectorizer(spec: str, texts: list[str], seed: int = 0) -> tuple[Any, float]:
    """A character TF-IDF for a word + character union, and the weight of its block.

    ``spec`` is ``W:LO,HI:MIN_DF:SAMPLE[:MAX_FEATURES]``: char_wb LO-HI-grams counted (vocabulary and idf)
    on a random SAMPLE of ``texts`` (0: all), then applied to every text by ``fastpath.tfidf_transform``
    (numpy counting; scikit-learn's fit on 100k texts costs about 85 s here), scaled by W.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    w, ng, md, n, *mf = spec.split(":")
    lo, hi = (int(x) for x in ng.split(","))
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(lo, hi), min_df=int(md), sublinear_tf=True,
                          dtype=np.float32, max_features=int(mf[0]) if mf else None)
    rows = np.arange(len(texts))
    if int(n) and int(n) < len(texts):
        rows = np.sort(np.random.default_rng(seed).choice(len(texts), int(n), replace=False))
    vec.fit([texts[i] for i in rows])
    return vec, float(w)


def char_percall(chars: tuple[Any, float], texts: list[str], n: int = 500) -> str:
    """What the character block adds per complaint at serving time: one text's ``fastpath.tfidf_transform``
    and its product with 23 label columns, median and p99 over ``n`` texts (one call each)."""
    vec, _ = chars
    W = np.random.default_rng(0).standard_normal((len(vec.vocabulary_), 23)).astype(np.float32)
    took = []
    for t in texts[:n]:
        t0 = time.perf_counter()
        np.asarray(fastpath.tfidf_transform(vec, [t]) @ W)
        took.append(time.perf_counter() - t0)
    ms = np.array(took) * 1000
    return f"character block per complaint: median {np.median(ms):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms ({n} calls)"


def with_chars(X: Any, chars: tuple[Any, float] | None, texts: list[str]) -> Any:
    """X with the character block (``char_vectorizer``) beside it, or X itself without one."""
    if chars is None:
        return X
    vec, w = chars
    C = fastpath.tfidf_transform(vec, texts)
    return sparse.hstack([X, C * np.float32(w)], format="csr", dtype=np.float32)


def rare_label_scores(X: Any, Y: np.ndarray, w: np.ndarray | None, rare: int, neg: int, C: float,
                      score_on: list[Any], seed: int = 0) -> dict[int, tuple[np.ndarray, ...]]:
    """Labels with 5..``rare`` positives refitted on X (word + character columns); with ``neg`` > 0 on every
    positive and ``neg`` random negatives, weighted up by their sampling rate. Scores on each of ``score_on``."""
    from sklearn.svm import LinearSVC

    w = np.ones(len(Y)) if w is None else w
    X = X.astype(np.float64)
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(Y.shape[1]):
        pos = Y[:, k] == 1
        if not 5 <= pos.sum() < rare:
            continue
        rows, wk = np.ones(len(Y), dtype=bool), w.copy()
        if neg and (~pos).sum() > neg:
            keep = rng.choice(np.flatnonzero(~pos), neg, replace=False)
            rows = pos.copy()
            rows[keep] = True
            wk = wk * np.where(pos, 1.0, (~pos).sum() / neg)
        svc = LinearSVC(C=C, random_state=seed).fit(X[rows], Y[rows, k], sample_weight=wk[rows])
        out[k] = tuple(np.asarray(M @ np.ravel(svc.coef_) + svc.intercept_[0]) for M in score_on)
    return out


def onset_mask(times: Any, Y: np.ndarray) -> np.ndarray:
    """(rows, labels): True where the row is older than the label's first positive row."""
    t = times.astype(str).to_numpy()
    first = [t[Y[:, k] == 1].min() if Y[:, k].any() else "9999" for k in range(Y.shape[1])]
    return np.stack([t < f for f in first], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/traffy.toml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--fits", nargs="+", default=["0.5:4,2:1"],
                    help="fits as C:recency:onset_weight[:tag...], e.g. 0.5:4,2:1 (train.py) or 1.0:8,2:0.1; "
                    "tags: oof, balanced, a learner (svm, logreg, avg, mhuber), lcN (logistic C), awN (avg "
                    "weight), dedup (near-identical training texts once)")
    ap.add_argument("--deciders", nargs="+", default=["platt", "common", "stack:10"])
    ap.add_argument("--pseudo-fit", default="", help="with --pseudo: fit tags, e.g. dedup or avg (see --fits), CN (LinearSVC C), "
                    "rareN[:negM][:rcC] (labels with fewer than N training positives refitted on words + characters "
                    "2-4 (block weight 1, counted on 20,000 texts; ccW/LO,HI/MIN_DF/SAMPLE for another block), "
                    "on M sampled negatives, at C)")
    ap.add_argument("--min-df", type=int, default=2, help="the word TF-IDF's min_df (train.py: 2)")
    ap.add_argument("--chars", default="", help="a word + character union: W:LO,HI:MIN_DF:SAMPLE[:MAX_FEATURES] "
                    "(char_wb n-grams counted on SAMPLE training texts, block scaled by W), e.g. 1:2,4:5:20000")
    ap.add_argument("--test", nargs="*", help="score these (fit/decider, e.g. 0.5:4,2:1/platt) on the test months")
    ap.add_argument("--pseudo", nargs="*", help="deciders to compare on a pseudo-future: fitted before the "
                    "month before validation, calibrated on that month, scored on the validation month")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.pseudo is not None:
        pseudo_future(a, t0)
        return
    config = load_config(a.config, a.data)
    frame, _ = load_dataset(config)
    frame = frame[frame["topic"].map(bool)].reset_index(drop=True)
    frame["norm"] = normalize_many(frame["text"].tolist())
    analyzed = analyze_words(frame["norm"].tolist())
    when = frame["time"].astype(str)
    vf, tf = str(config.split["valid_from"]), str(config.split["test_from"])
    labels = sorted({lab for labs in frame["topic"] for lab in labs})
    train = frame[when < vf].drop_duplicates(subset=["norm"], keep="last")
    valid = frame[(when >= vf) & (when < tf)]
    test = frame[when >= tf]
    recent = frame[when < tf].drop_duplicates(subset=["norm"], keep="last")
    in_valid = (recent["time"].astype(str) >= vf).to_numpy()
    Yv, Yt, Yr, Ytr = (_binarize(p["topic"], labels) for p in (valid, test, recent, train))
    onset = onset_mask(recent["time"], Yr)
    print(f"[{time.perf_counter() - t0:4.0f}s] train {len(train)} distinct, validation {len(valid)}, test {len(test)}, "
          f"{len(labels)} labels", flush=True)
    feat, Xtr = fit_featurizer("word", train["norm"].tolist(), analyzed, min_df=a.min_df)
    Xv = feat.transform(valid["norm"].tolist()).tocsr()
    chars = None
    if a.chars:
        t_c = time.perf_counter()
        chars = char_vectorizer(a.chars, train["norm"].tolist())
        Xtr, Xv = with_chars(Xtr, chars, train["norm"].tolist()), with_chars(Xv, chars, valid["norm"].tolist())
        print(f"[{time.perf_counter() - t0:4.0f}s] characters {a.chars}: {len(chars[0].vocabulary_)} columns, "
              f"{time.perf_counter() - t_c:.1f} s; nnz per row {Xtr.nnz / Xtr.shape[0]:.0f}", flush=True)
        print("  " + char_percall(chars, valid["norm"].tolist()), flush=True)
    Xr = Xt = None
    halves = np.random.default_rng(1).integers(0, 2, size=len(valid))
    pos = {t: i for i, t in enumerate(recent.loc[in_valid, "norm"])}
    for fit in a.fits:
        c, rec, ow, *how = fit.split(":")
        C, recency, onset_weight = float(c), tuple(float(x) for x in rec.split(",") if x), float(ow)
        wtr = recency_weights(train["time"], recency)
        wtr = np.ones(len(train)) if wtr is None else wtr
        cw = "balanced" if "balanced" in how else None  # class weights: each label's positives weigh as its negatives
        learner = next((h for h in how if h in TOPIC_LEARNERS), "svm")
        lc = next((float(h[2:]) for h in how if h.startswith("lc")), 4.0)
        aw = next((float(h[2:]) for h in how if h.startswith("aw")), 0.25)

        def make(C: float = C, cw: str | None = cw, learner: str = learner, lc: float = lc, aw: float = aw) -> TopicHead:
            return TopicHead(labels, True, C=C, class_weight=cw, learner=learner, logreg_C=lc, avg_weight=aw)

        keep_tr = keep_r = None
        if "dedup" in how:  # near-identical texts (same letters once digits, spaces and punctuation are gone) once
            keep_tr = ~train["norm"].map(letters_key).duplicated(keep="last").to_numpy()
            keep_r = ~recent["norm"].map(letters_key).duplicated(keep="last").to_numpy()
            print(f"  dedup letters: train {len(train)} -> {int(keep_tr.sum())}, train + validation {len(recent)} -> "
                  f"{int(keep_r.sum())}", flush=True)
        t_fit = time.perf_counter()
        if keep_tr is None:
            head = make().fit(Xtr, Ytr, wtr)
        else:
            head = make().fit(Xtr[keep_tr], Ytr[keep_tr], wtr[keep_tr])
        print(f"[{time.perf_counter() - t0:4.0f}s] fitted {fit} on train in {time.perf_counter() - t_fit:.1f} s", flush=True)
        Sv = head.decision(Xv)
        learned = np.array([hasattr(e, "coef_") for e in head.clf_.estimators_])  # type: ignore[union-attr]
        if Xr is None:
            feat2, Xr = fit_featurizer("word", recent["norm"].tolist(), analyzed, min_df=a.min_df)
            Xt = feat2.transform(test["norm"].tolist()).tocsr()
            if a.chars:
                chars_r = char_vectorizer(a.chars, recent["norm"].tolist())
                Xr = with_chars(Xr, chars_r, recent["norm"].tolist())
                Xt = with_chars(Xt, chars_r, test["norm"].tolist())
        wr = recency_weights(recent["time"], recency)
        wr = np.ones(len(recent)) if wr is None else wr
        new = [k for k in range(len(labels)) if not learned[k] and Yr[in_valid, k].sum() >= 5]
        if keep_r is not None:
            wr = wr * keep_r  # weight 0: left out of every fit below
        oof = oof_new_label_scores(C, Xr, Yr, in_valid, wr, new, onset, onset_weight, class_weight=cw, head=make())
        for k, s in oof.items():
            Sv[:, k] = [s[pos[t]] for t in valid["norm"]]
        if "oof" in how:  # every label scored out of fold by fits on train + the other half of 2022-10
            half = np.random.default_rng(0).integers(0, 2, size=len(recent))
            s_oof = np.zeros((int(in_valid.sum()), len(labels)))
            for f in (0, 1):
                rows = ~(in_valid & (half == f))
                h = make().fit(Xr[rows], Yr[rows], wr[rows])
                s_oof[half[in_valid] == f] = h.decision(Xr[in_valid & (half == f)])
            Sv = s_oof[[pos[t] for t in valid["norm"]]]
            learned = learned | np.isin(np.arange(len(labels)), new)
        usable = learned | np.isin(np.arange(len(labels)), new)
        print(f"[{time.perf_counter() - t0:4.0f}s] fit {fit}; new labels {[labels[k] for k in new]}", flush=True)
        for kind in a.deciders:
            D = np.zeros_like(Yv, dtype=bool)
            for h in (0, 1):
                d = Decider(kind, usable).fit(Sv[halves == h], Yv[halves == h])
                D[halves != h] = d.decide(Sv[halves != h])
            mi, ma = scores(Yv, D)
            newf = [round(float(f1_score(Yv[:, k], D[:, k], zero_division=0)), 3) for k in new]
            print(f"validation (2-fold cross-fitted) {fit} {kind:8s}: micro-F1 {mi:.4f} macro-F1 {ma:.4f}  "
                  f"new labels F1 {newf}", flush=True)
            if kind == a.deciders[0] and fit == a.fits[0]:
                per_label(Yv, D, labels, f"validation month (cross-fitted), {fit} {kind}")
            if a.test and any(x.startswith(fit + "/") for x in a.test):
                pos_w = wr > 0
                refit = make().fit(Xr[pos_w], Yr[pos_w], wr[pos_w])
                if onset_weight != 1.0:
                    refit_new_labels(refit, Xr, Yr, wr, new, onset, onset_weight)
                St = refit.decision(Xt)
                for x in a.test:
                    if x.startswith(fit + "/"):
                        d = Decider(x.split("/", 1)[1], usable).fit(Sv, Yv)
                        Dt = d.decide(St)
                        mi, ma = scores(Yt, Dt)
                        print(f"TEST 2022-11..12 {x}: micro-F1 {mi:.4f} macro-F1 {ma:.4f}", flush=True)
                        per_label(Yt, Dt, labels, f"test months, {x}")
                a.test = [x for x in a.test if not x.startswith(fit + "/")]


def pseudo_future(a: Any, t0: float) -> None:
    """The test months' situation one month earlier, without the test months: fit before 2022-09,
    calibrate and threshold on 2022-09, score 2022-10 (over the labels the fit knew)."""
    config = load_config(a.config, a.data)
    frame, _ = load_dataset(config)
    frame = frame[frame["topic"].map(bool)].reset_index(drop=True)
    when = frame["time"].astype(str)
    vf = str(config.split["valid_from"])
    cf = (pd.Period(vf, freq="M") - 1).strftime("%Y-%m")
    frame = frame[when < str(config.split["test_from"])].reset_index(drop=True)
    when = frame["time"].astype(str)
    frame["norm"] = normalize_many(frame["text"].tolist())
    analyzed = analyze_words(frame["norm"].tolist())
    labels = sorted({lab for labs in frame[when < vf]["topic"] for lab in labs})
    train = frame[when < cf].drop_duplicates(subset=["norm"], keep="last")
    tags = [t for t in a.pseudo_fit.split(":") if t]
    if "dedup" in tags:
        kept = ~train["norm"].map(letters_key).duplicated(keep="last")
        print(f"  dedup letters: train {len(train)} -> {int(kept.sum())}")
        train = train[kept.to_numpy()]
    calib, scored = frame[(when >= cf) & (when < vf)], frame[when >= vf]
    feat, X = fit_featurizer("word", train["norm"].tolist(), analyzed, min_df=a.min_df)
    chars = char_vectorizer(a.chars, train["norm"].tolist()) if a.chars else None
    X = with_chars(X, chars, train["norm"].tolist())
    if chars is not None:
        print(f"  characters {a.chars}: {len(chars[0].vocabulary_)} columns, nnz per row {X.nnz / X.shape[0]:.0f}; "
              + char_percall(chars, calib["norm"].tolist()), flush=True)
    w = recency_weights(train["time"], (4.0, 2.0))
    learner = next((t for t in tags if t in TOPIC_LEARNERS), "svm")
    C = next((float(t[1:]) for t in tags if t.startswith("C")), 0.5)
    t_fit = time.perf_counter()
    head = TopicHead(labels, True, C=C, learner=learner).fit(X, _binarize(train["topic"], labels), w)
    print(f"[{time.perf_counter() - t0:4.0f}s] fitted in {time.perf_counter() - t_fit:.1f} s", flush=True)
    Xc_, Xs_ = (with_chars(feat.transform(p["norm"].tolist()).tocsr(), chars, p["norm"].tolist()) for p in (calib, scored))
    Sc, Ss = head.decision(Xc_), head.decision(Xs_)
    rare = next((int(t[4:]) for t in tags if t.startswith("rare")), 0)
    if rare:  # "rareN[:negM][:cwW][:CcX]": labels with fewer than N training positives get a word + character fit
        spec = next((t[2:].replace("/", ":") for t in tags if t.startswith("cc")), "1:2,4:5:20000")
        cv = char_vectorizer(spec, train["norm"].tolist())
        Xu = with_chars(X, cv, train["norm"].tolist())
        Xcu, Xsu = (with_chars(M, cv, p["norm"].tolist()) for M, p in ((Xc_, calib), (Xs_, scored)))
        Ytr = _binarize(train["topic"], labels)
        neg = next((int(t[3:]) for t in tags if t.startswith("neg")), 0)
        Cr = next((float(t[2:]) for t in tags if t.startswith("rc")), C)
        t_r = time.perf_counter()
        done = rare_label_scores(Xu, Ytr, w, rare, neg, Cr, [Xcu, Xsu])
        for k, (sc, ss) in done.items():
            Sc[:, k], Ss[:, k] = sc, ss
        print(f"[{time.perf_counter() - t0:4.0f}s] rare labels (< {rare} positives, negatives {neg or 'all'}): "
              f"{[labels[k] for k in done]} in {time.perf_counter() - t_r:.1f} s", flush=True)
    Yc, Ys = _binarize(calib["topic"], labels), _binarize(scored["topic"], labels)
    learned = np.array([hasattr(e, "coef_") for e in head.clf_.estimators_])  # type: ignore[union-attr]
    print(f"[{time.perf_counter() - t0:4.0f}s] pseudo-future: train < {cf} ({len(train)}), calibrate {cf} "
          f"({len(calib)}), score {vf} ({len(scored)}), {len(labels)} labels", flush=True)
    print(f"  labels per ticket: calibration month {Yc.sum(1).mean():.3f}, scored month {Ys.sum(1).mean():.3f}")
    for kind in a.pseudo:
        D = Decider(kind, learned).fit(Sc, Yc).decide(Ss)
        mi, ma = scores(Ys, D)
        print(f"pseudo-future {kind:10s}: micro-F1 {mi:.4f} macro-F1 {ma:.4f}", flush=True)
        if kind == a.pseudo[0]:
            per_label(Ys, D, labels, f"pseudo-future {kind}")


def refit_new_labels(head: TopicHead, X: Any, Y: np.ndarray, w: np.ndarray, new: list[int], onset: np.ndarray,
                     onset_weight: float) -> None:
    from sklearn.svm import LinearSVC

    for k in new:
        wk = w.copy()
        wk[onset[:, k]] *= onset_weight
        rows = wk > 0
        head.clf_.estimators_[k] = LinearSVC(C=head.C).fit(X[rows], Y[rows, k], sample_weight=wk[rows])  # type: ignore[union-attr]
    from triage import fastpath
    fastpath._CACHE.clear() if hasattr(fastpath, "_CACHE") else None


if __name__ == "__main__":
    main()
