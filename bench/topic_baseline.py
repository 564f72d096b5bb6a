"""Plain topic baselines on the same time-ordered split as train.py, with their cost in seconds.

    python bench/topic_baseline.py --data ../shared/data --features char word both

Each run: TF-IDF features + one-vs-rest LinearSVC (C=0.5, TopicHead without calibration), trained on every labelled ticket before
the test month (train + validation of configs/traffy.toml, duplicates removed), decisions "score > 0,
and at least the best label", scored on the later test tickets over the labels present there.
``char`` (character 2-4-grams) is the plain baseline the issue quotes; train.py's calibrated,
thresholded model is scored on the same test tickets (its report.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from triage.data import load_config, load_dataset
from triage.evaluate import multilabel_metrics
from triage.model import TopicHead, make_featurizer
from triage.text import normalize_many
from triage.training import _binarize, recency_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/traffy.toml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--features", nargs="+", default=["char"], choices=["char", "word", "both"])
    ap.add_argument("--recency", nargs="*", type=float, default=[],
                    help="also fit with these recency weights (last month, the one before, ...; see train.py)")
    a = ap.parse_args()
    config = load_config(a.config, a.data)
    frame, report = load_dataset(config)
    t0 = time.perf_counter()
    frame = frame[frame["topic"].map(bool)].reset_index(drop=True)
    frame["norm"] = normalize_many(frame["text"].tolist())
    print(f"loaded {report.summary()}; normalised in {time.perf_counter() - t0:.1f}s")
    when = frame["time"].astype(str)
    test_from = str(config.split["test_from"])
    train = frame[when < test_from].drop_duplicates(subset=["norm"], keep="last")
    test = frame[when >= test_from]
    labels = sorted({lab for labs in frame["topic"] for lab in labs})
    Y_train, Y_test = _binarize(train["topic"], labels), _binarize(test["topic"], labels)
    print(f"train < {test_from}: {len(train)} distinct texts; test >= {test_from}: {len(test)} tickets; "
          f"{len(labels)} labels")
    for kind in a.features:
        t0 = time.perf_counter()
        feat = make_featurizer(kind)
        X_train = feat.fit_transform(train["norm"].tolist())
        X_test = feat.transform(test["norm"].tolist())
        vectorise = time.perf_counter() - t0
        for weights in ([None, tuple(a.recency)] if a.recency else [None]):
            t1 = time.perf_counter()
            w = recency_weights(train["time"], weights) if weights else None
            head = TopicHead(labels, multi_label=True).fit(X_train, Y_train, w)
            t2 = time.perf_counter()
            S = head.decision(X_test)
            D = S > 0
            D[np.arange(len(S)), S.argmax(axis=1)] = True
            m = multilabel_metrics(Y_test, D, labels)
            print(f"{kind:5s} features {X_train.shape[1]:7d}  recency {str(weights or 'none'):10s}  micro-F1 "
                  f"{m['micro_f1']:.4f}  macro-F1 {m['macro_f1']:.4f}  ({m['labels_scored']} labels)  "
                  f"vectorise {vectorise:5.1f}s  fit {t2 - t1:5.1f}s", flush=True)


if __name__ == "__main__":
    main()
