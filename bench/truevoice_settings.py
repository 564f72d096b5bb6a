"""TrueVoice destination: which featurizer / C settings, chosen on the validation part, confirmed on test.

    python bench/truevoice_settings.py --data ../shared/data              # sweep, scored on validation
    python bench/truevoice_settings.py --data ../shared/data --test both 0.5 2,4   # one setting on test
    python bench/truevoice_settings.py --data ../shared/data --cv     # 5-fold CV on train + validation only

``--cv`` never reads the test part: the training and validation parts of the config's split are cut
into five folds; each fold is scored by the recipe of train.py (fit on the rest minus an eighth,
calibrated on that eighth, refitted on the rest with that calibration). Macro-F1 of the five folds'
predictions together (10,352 utterances instead of the 1,294 of the validation part: a 0.01
difference on the validation part alone was noise, see README).

Uses the split of configs/truevoice.toml and the training code's own pieces (TopicHead, calibration
on the validation part); prints accuracy and macro-F1 over the destinations.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from triage import evaluate
from triage.data import load_config, load_dataset
from triage.learners import TOPIC_LEARNERS
from triage.model import TopicHead, analyze_words, fit_featurizer
from triage.text import normalize_many
from triage.training import _binarize, _split


def macro_f1_bias(logP: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive biases on log-probabilities that maximise macro-F1 of the argmax on (logP, y)
    (coordinate ascent over a grid; "bias" tag: a single-label decision rule tuned for macro-F1)."""
    from sklearn.metrics import f1_score

    b = np.zeros(logP.shape[1])
    grid = np.linspace(-1.5, 1.5, 31)
    for _ in range(rounds):
        for k in range(len(b)):
            best = (float(f1_score(y, (logP + b).argmax(axis=1), average="macro")), b[k])  # ties keep the current bias
            for g in grid:
                b[k] = g
                f = f1_score(y, (logP + b).argmax(axis=1), average="macro")
                if f > best[0] + 1e-9:
                    best = (f, g)
            b[k] = best[1]
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--test", nargs="+", metavar="FEATURES C CHAR_NGRAM [TAG ...]", help="score one setting on test")
    ap.add_argument("--cv", action="store_true", help="choose by 5-fold CV on train + validation (never the test part)")
    ap.add_argument("--settings", nargs="*", help="with --cv: settings as FEATURES:C:CHAR_NGRAM[:TAG...]; tags: "
                    "balanced (class weights), a topic learner (svm, logreg, avg, mhuber), lcN (logistic C), "
                    "awN (avg weight), mdN (min_df), nosub (raw tf instead of sublinear)")
    args = ap.parse_args()
    started = time.perf_counter()
    config = load_config("configs/truevoice.toml", args.data)
    frame, _ = load_dataset(config)
    frame["norm"] = normalize_many(frame["text"].tolist())
    lab = frame[frame["topic"].map(bool)].reset_index(drop=True)
    tr, va, te, _ = _split(lab, config)
    labels = sorted({x for labs in lab["topic"] for x in labs})
    analyzed = analyze_words(lab["norm"].tolist())

    def predict(kind: str, C: float, char_ngram: tuple[int, int], fit: object, calib: object, scored: object,
                class_weight: str | None = None, refit: bool = False, tags: tuple[str, ...] = ()) -> list[str]:
        learner = next((t for t in tags if t in TOPIC_LEARNERS), "svm")
        lc = next((float(t[2:]) for t in tags if t.startswith("lc")), 4.0)
        aw = next((float(t[2:]) for t in tags if t.startswith("aw")), 0.25)
        feat_opts = {"min_df": next((int(t[2:]) for t in tags if t.startswith("md")), 2),
                     "sublinear_tf": "nosub" not in tags}

        def new_head() -> TopicHead:
            return TopicHead(labels, False, C=C, class_weight=class_weight, learner=learner, logreg_C=lc, avg_weight=aw)

        featurizer, X = fit_featurizer(kind, lab.loc[fit, "norm"].tolist(), analyzed, char_ngram, **feat_opts)
        head = new_head().fit(X, _binarize(lab.loc[fit, "topic"], labels))
        Xc, Yc = featurizer.transform(lab.loc[calib, "norm"].tolist()).tocsr(), _binarize(lab.loc[calib, "topic"], labels)
        head.calibrate(Xc, Yc)
        bias = macro_f1_bias(np.log(head.proba(Xc) + 1e-12), Yc.argmax(axis=1)) if "bias" in tags else 0.0
        if refit:  # train.py's evaluated recipe: refit on train + validation, keeping the calibration
            both = lab.loc[fit].index.append(lab.loc[calib].index)
            featurizer, X = fit_featurizer(kind, lab.loc[both, "norm"].tolist(), analyzed, char_ngram, **feat_opts)
            again = new_head()
            again.calibration_, again.thresholds_ = head.calibration_, head.thresholds_
            head = again.fit(X, _binarize(lab.loc[both, "topic"], labels))
        P = head.proba(featurizer.transform(lab.loc[scored, "norm"].tolist()).tocsr())
        return [labels[k] for k in (np.log(P + 1e-12) + bias).argmax(axis=1)]

    def run(kind: str, C: float, char_ngram: tuple[int, int], scored: object, class_weight: str | None = None,
            tags: tuple[str, ...] = ()) -> dict:
        true = [labs[0] for labs in lab.loc[scored, "topic"]]
        pred = predict(kind, C, char_ngram, tr, va, scored, class_weight, refit=scored is te, tags=tags)
        return evaluate.single_label_metrics(true, pred, labels)

    if args.test:
        kind, C, ngram = args.test[0], float(args.test[1]), tuple(int(x) for x in args.test[2].split(","))
        tags = tuple(args.test[3:])
        cw = "balanced" if "balanced" in tags else None
        m = run(kind, C, ngram, te, cw, tags)  # type: ignore[arg-type]
        print(f"test {kind} C={C} char {ngram} {' '.join(tags)}: accuracy {m['accuracy']} macro-F1 {m['macro_f1']}")
        return
    if args.cv:
        from sklearn.model_selection import StratifiedKFold

        rest = tr.append(va)
        y = np.array([labs[0] for labs in lab.loc[rest, "topic"]])
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(rest)), y))
        for setting in args.settings or ["word:0.5:2,4"]:
            parts = setting.split(":")
            kind, C, ngram = parts[0], float(parts[1]), tuple(int(x) for x in parts[2].split(","))
            tags = tuple(parts[3:])
            cw = "balanced" if "balanced" in tags else None
            pred = np.empty(len(rest), dtype=object)
            cut = np.random.default_rng(0)  # the same calibration eighths for every setting
            for fit_i, score_i in folds:
                calib = cut.random(len(fit_i)) < 0.125  # the config's validation share of train + validation
                pred[score_i] = predict(kind, C, ngram, rest[fit_i[~calib]], rest[fit_i[calib]], rest[score_i],  # type: ignore[arg-type]
                                        cw, refit=True, tags=tags)
            m = evaluate.single_label_metrics(list(y), list(pred), labels)
            print(f"[{time.perf_counter() - started:5.0f}s] 5-fold CV (train + validation, {len(rest)}) {setting}: "
                  f"accuracy {m['accuracy']} macro-F1 {m['macro_f1']}", flush=True)
        return
    settings = [(k, c, (2, 4)) for k in ("word", "char", "both") for c in (0.25, 0.5, 1.0)]
    settings += [("both", 0.5, ng) for ng in ((1, 3), (2, 5), (3, 5))]
    for kind, C, ngram in settings:
        m = run(kind, C, ngram, va)
        print(f"[{time.perf_counter() - started:5.0f}s] validation {kind} C={C} char {ngram}: "
              f"accuracy {m['accuracy']} macro-F1 {m['macro_f1']}", flush=True)


if __name__ == "__main__":
    main()
