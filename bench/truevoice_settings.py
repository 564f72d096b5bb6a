"""TrueVoice destination: which featurizer / C settings, chosen on the validation part, confirmed on test.

    python bench/truevoice_settings.py --data ../shared/data              # sweep, scored on validation
    python bench/truevoice_settings.py --data ../shared/data --test both 0.5 2,4   # one setting on test

Uses the split of configs/truevoice.toml and the training code's own pieces (TopicHead, calibration
on the validation part); prints accuracy and macro-F1 over the destinations.
"""

from __future__ import annotations

import argparse
import time

from triage import evaluate
from triage.data import load_config, load_dataset
from triage.model import TopicHead, analyze_words, fit_featurizer
from triage.text import normalize_many
from triage.training import _binarize, _split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--test", nargs=3, metavar=("FEATURES", "C", "CHAR_NGRAM"), help="score one setting on test")
    args = ap.parse_args()
    started = time.perf_counter()
    config = load_config("configs/truevoice.toml", args.data)
    frame, _ = load_dataset(config)
    frame["norm"] = normalize_many(frame["text"].tolist())
    lab = frame[frame["topic"].map(bool)].reset_index(drop=True)
    tr, va, te, _ = _split(lab, config)
    labels = sorted({x for labs in lab["topic"] for x in labs})
    analyzed = analyze_words(lab["norm"].tolist())

    def run(kind: str, C: float, char_ngram: tuple[int, int], scored: object) -> dict:
        featurizer, X = fit_featurizer(kind, lab.loc[tr, "norm"].tolist(), analyzed, char_ngram)
        head = TopicHead(labels, False, C=C).fit(X, _binarize(lab.loc[tr, "topic"], labels))
        head.calibrate(featurizer.transform(lab.loc[va, "norm"].tolist()).tocsr(), _binarize(lab.loc[va, "topic"], labels))
        P = head.proba(featurizer.transform(lab.loc[scored, "norm"].tolist()).tocsr())
        true = [labs[0] for labs in lab.loc[scored, "topic"]]
        return evaluate.single_label_metrics(true, [labels[k] for k in P.argmax(axis=1)], labels)

    if args.test:
        kind, C, ngram = args.test[0], float(args.test[1]), tuple(int(x) for x in args.test[2].split(","))
        m = run(kind, C, ngram, te)  # type: ignore[arg-type]
        print(f"test {kind} C={C} char {ngram}: accuracy {m['accuracy']} macro-F1 {m['macro_f1']}")
        return
    settings = [(k, c, (2, 4)) for k in ("word", "char", "both") for c in (0.25, 0.5, 1.0)]
    settings += [("both", 0.5, ng) for ng in ((1, 3), (2, 5), (3, 5))]
    for kind, C, ngram in settings:
        m = run(kind, C, ngram, va)
        print(f"[{time.perf_counter() - started:5.0f}s] validation {kind} C={C} char {ngram}: "
              f"accuracy {m['accuracy']} macro-F1 {m['macro_f1']}", flush=True)


if __name__ == "__main__":
    main()
