"""Training: load a configured dataset, split it honestly, fit and evaluate the heads, save.

The evaluated recipe: the topic head is fitted on the earlier part, calibrated and thresholded
on the validation part, and scored on the later test part; the urgency head is scored by nested
cross-validation and on later tickets. The shipped model is the same recipe refitted on all
labelled rows, keeping the calibration and thresholds found on the validation part (option
``final_fit="train"`` ships the evaluated model itself instead).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from triage import evaluate, registry
from triage.data import (
    DatasetConfig,
    fingerprint,
    load_dataset,
    random_split,
    time_split,
)
from triage.errors import DataError
from triage.model import (
    HIGH_CUE_BONUS,
    HIGH_MISS_COST,
    URGENCY_LEVELS,
    Lexicon,
    TopicHead,
    TriageModel,
    UrgencyHead,
    make_featurizer,
)
from triage.text import normalize_many

Log = Callable[[str], None]


@dataclass
class TrainOptions:
    """Choices for one training run."""

    features: str = "word"
    final_fit: str = "all"  # "all": refit on every labelled row; "train": ship the evaluated model
    topic_C: float = 0.5
    recency: tuple[float, ...] = (4.0, 2.0)  # weight of the last month, the month before; older = 1
    seed: int = 0
    corrections: pd.DataFrame | None = None
    correction_weight: int = 3
    extra: dict[str, Any] = field(default_factory=dict)


def _split(frame: pd.DataFrame, config: DatasetConfig) -> tuple[pd.Index, pd.Index, pd.Index, str]:
    spec = config.split or {}
    if spec.get("kind", "time") == "time" and config.time_column:
        valid_from, test_from = str(spec.get("valid_from")), str(spec.get("test_from"))
        tr, va, te = time_split(frame, valid_from, test_from)
        return tr, va, te, f"time: train < {valid_from} <= validation < {test_from} <= test"
    valid, test, seed = float(spec.get("valid", 0.1)), float(spec.get("test", 0.2)), int(spec.get("seed", 0))
    tr, va, te = random_split(frame, valid, test, seed)
    return tr, va, te, f"random (seed {seed}): validation {valid:.0%}, test {test:.0%}"


def recency_weights(times: pd.Series, weights: tuple[float, ...]) -> np.ndarray | None:
    """Sample weights that favour the latest months of a training period.

    ``weights`` are for the last month, the one before, ... (older rows weigh 1). Label habits
    drift (the label ป้าย only exists from 2022-10 on), so the newest tickets teach the current
    conventions; measured in README (Recency). None when rows have no time.
    """
    parsed = pd.to_datetime(times.astype(str).str[:7], format="%Y-%m", errors="coerce")
    known = parsed.notna().to_numpy()
    if not weights or not known.any():
        return None
    month = pd.PeriodIndex(parsed[known], freq="M")
    age = np.full(len(times), -1)
    age[known] = (month.max() - month).map(lambda d: d.n).to_numpy()
    w = np.ones(len(times))  # rows without time (e.g. corrections, weighted by repetition) count 1
    for k, value in enumerate(weights):
        w[age == k] = value
    return w


def _binarize(rows: pd.Series, labels: list[str]) -> np.ndarray:
    index = {lab: k for k, lab in enumerate(labels)}
    Y = np.zeros((len(rows), len(labels)), dtype=np.int8)
    for i, labs in enumerate(rows):
        for lab in labs:
            if lab in index:
                Y[i, index[lab]] = 1
    return Y


def apply_corrections(frame: pd.DataFrame, corrections: pd.DataFrame | None, weight: int) -> pd.DataFrame:
    """Add reviewers' corrections to the training rows; they outweigh the original labels.

    A correction replaces the original row of the same id (if any) and is repeated ``weight``
    times, so the learner sees it as more certain than an ordinary label.
    """
    if corrections is None or corrections.empty:
        return frame
    corr = corrections.copy()
    for col in frame.columns:
        if col not in corr.columns:
            corr[col] = None
    corr = corr[frame.columns]
    kept = frame[~frame["id"].isin(set(corr["id"]))]
    return pd.concat([kept] + [corr] * max(1, weight), ignore_index=True)


def urgency_metrics(y: np.ndarray, pred: list[str]) -> dict[str, Any]:
    """Recall and precision of high, share flagged high, macro-F1 and the confusion counts."""
    pred_a = np.array(pred)
    hi_true, hi_pred = y == "high", pred_a == "high"
    return {
        "rows": len(y),
        "high_recall": round(float((hi_true & hi_pred).sum() / max(hi_true.sum(), 1)), 4),
        "high_precision": round(float((hi_true & hi_pred).sum() / max(hi_pred.sum(), 1)), 4),
        "flagged_high_share": round(float(hi_pred.mean()), 4),
        "macro_f1": round(float(f1_score(y, pred_a, labels=list(URGENCY_LEVELS), average="macro", zero_division=0)), 4),
        "confusion": {t: {p: int(((y == t) & (pred_a == p)).sum()) for p in URGENCY_LEVELS} for t in URGENCY_LEVELS},
    }


def _urgency_design(model: TriageModel, head: UrgencyHead, norm: list[str]) -> Any:
    X = model.featurize(norm)
    head.select_words(model.word_block(X))
    return head.design(norm, model.topic.proba(X), model.word_block(X))


def evaluate_urgency(model: TriageModel, frame: pd.DataFrame, norm: list[str], test_from: str | None,
                     seed: int) -> dict[str, Any]:
    """Nested cross-validation (threshold chosen inside each training fold) and a later-tickets test."""
    y = frame["urgency"].to_numpy()
    head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load())
    Z = _urgency_design(model, head, norm)
    pred = np.empty(len(y), dtype=object)
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        fold = UrgencyHead(list(URGENCY_LEVELS), head.lexicon, word_cols_=head.word_cols_).fit(Z[tr], y[tr], seed)
        pred[te] = fold.decide(fold.proba(Z[te]), Z[te])
    out: dict[str, Any] = {"cross_validated": urgency_metrics(y, list(pred))}
    if test_from and frame["time"].notna().all():
        later = (frame["time"].astype(str) >= test_from).to_numpy()
        if later.sum() and (~later).sum() and (y[later] == "high").any():
            fold = UrgencyHead(list(URGENCY_LEVELS), head.lexicon, word_cols_=head.word_cols_).fit(
                Z[~later], y[~later], seed)
            out["time_ordered"] = urgency_metrics(y[later], fold.decide(fold.proba(Z[later]), Z[later]))
    return out


def train(config: DatasetConfig, models_dir: Path, options: TrainOptions | None = None, log: Log = print,
          make_current: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train every head the dataset config defines, evaluate on held-out data, save a version."""
    options = options or TrainOptions()
    started = time.perf_counter()

    def step(msg: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f}s] {msg}")

    frame, report = load_dataset(config)
    frame = apply_corrections(frame, options.corrections, options.correction_weight)
    step(f"loaded {config.name}: {report.summary()}")
    if "topic" not in config.heads:
        raise DataError(f"dataset config {config.name!r} has no topic head; the model needs one")
    frame["norm"] = normalize_many(frame["text"].tolist())
    step("normalised texts")

    labelled = frame[frame["topic"].map(bool)].reset_index(drop=True)
    if len(labelled) < 20:
        raise DataError(f"only {len(labelled)} rows have a topic label; at least 20 are needed")
    tr, va, te, split_desc = _split(labelled, config)
    # Label set from every labelled row: a label that first appears after the training period
    # (PM2.5 in late 2022) is still learned by the shipped refit; the evaluated model cannot
    # predict it, which the test report shows honestly.
    labels = sorted({lab for labs in labelled["topic"] for lab in labs})
    multi = bool(labelled["topic"].map(len).gt(1).any())
    train_rows = labelled.loc[tr].drop_duplicates(subset=["norm"], keep="last")  # repeated texts add time, not signal
    step(f"split {split_desc}: train {len(tr)} ({len(train_rows)} distinct texts), validation {len(va)}, "
         f"test {len(te)}; {len(labels)} topic labels, {'multi' if multi else 'single'}-label")

    featurizer = make_featurizer(options.features)
    X_train = featurizer.fit_transform(train_rows["norm"].tolist()).tocsr()
    step(f"features: {X_train.shape[1]} ({options.features})")
    topic = TopicHead(labels, multi, C=options.topic_C).fit(X_train, _binarize(train_rows["topic"], labels),
                                                             recency_weights(train_rows["time"], options.recency))
    version = registry.new_version(config.name)
    model = TriageModel(version, featurizer, topic)
    X_valid = model.featurize(labelled.loc[va, "norm"].tolist())
    topic.calibrate(X_valid, _binarize(labelled.loc[va, "topic"], labels))
    # Refit on train + validation with the calibration and thresholds found on validation, so that
    # the evaluated model knows the most recent month (labels such as ป้าย first appear there).
    recent = labelled.loc[tr.append(va)].drop_duplicates(subset=["norm"], keep="last")
    featurizer = make_featurizer(options.features)
    X_recent = featurizer.fit_transform(recent["norm"].tolist()).tocsr()
    refit = TopicHead(labels, multi, C=options.topic_C)
    refit.calibration_, refit.thresholds_ = topic.calibration_, topic.thresholds_
    topic = refit.fit(X_recent, _binarize(recent["topic"], labels), recency_weights(recent["time"], options.recency))
    model = TriageModel(version, featurizer, topic)
    step(f"topic head calibrated on validation, refitted on train + validation ({len(recent)} distinct texts)")
    X_test = model.featurize(labelled.loc[te, "norm"].tolist())
    Y_test = _binarize(labelled.loc[te, "topic"], labels)
    P_test = topic.proba(X_test)
    D_test = topic.decide(P_test)
    step("topic head scored on test")
    metrics: dict[str, Any] = {
        "version": version, "dataset": config.name, "split": split_desc, "data_report": report.summary(),
        "topic": {
            "test": evaluate.multilabel_metrics(Y_test, D_test, labels),
            "calibration": evaluate.calibration(Y_test, P_test),
            "thresholds": {lab: round(float(t), 3) for lab, t in zip(labels, topic.thresholds_)},  # type: ignore[arg-type]  # set: decide() used it
            "confusions": evaluate.label_confusions(Y_test, D_test, labels),
            "worst_errors": evaluate.worst_errors(labelled.loc[te, "text"].tolist(), Y_test, P_test, D_test, labels),
        },
    }
    if not multi:
        true1 = [labs[0] for labs in labelled.loc[te, "topic"]]
        pred1 = [labels[int(k)] for k in P_test.argmax(axis=1)]
        metrics["topic"]["single_label"] = evaluate.single_label_metrics(true1, pred1, labels)
    t = metrics["topic"]["test"]
    step(f"topic test: micro-F1 {t['micro_f1']} macro-F1 {t['macro_f1']} (ECE {metrics['topic']['calibration']['ece']})")

    test_from = str(config.split.get("test_from")) if config.split.get("test_from") else None
    urgent = frame[frame.get("urgency", pd.Series(dtype=object)).notna()].reset_index(drop=True) \
        if "urgency" in frame.columns else frame.iloc[0:0]
    if "urgency" in config.heads and len(urgent) >= 50:
        metrics["urgency"] = evaluate_urgency(model, urgent, urgent["norm"].tolist(), test_from, options.seed)
        cv = metrics["urgency"]["cross_validated"]
        step(f"urgency (5-fold nested CV on {len(urgent)}): recall(high) {cv['high_recall']} "
             f"macro-F1 {cv['macro_f1']} flagged high {cv['flagged_high_share']}")

    if options.final_fit == "all":
        everything = labelled.drop_duplicates(subset=["norm"], keep="last")
        final_featurizer = make_featurizer(options.features)
        X_all = final_featurizer.fit_transform(everything["norm"].tolist()).tocsr()
        final_topic = TopicHead(labels, multi, C=options.topic_C)
        final_topic.calibration_, final_topic.thresholds_ = topic.calibration_, topic.thresholds_
        final_topic.fit(X_all, _binarize(everything["topic"], labels), recency_weights(everything["time"], options.recency))
        model = TriageModel(version, final_featurizer, final_topic)
        step(f"refitted topic head on all {len(everything)} distinct labelled texts")
    if "urgency" in metrics:
        head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load())
        Z = _urgency_design(model, head, urgent["norm"].tolist())
        model.urgency = head.fit(Z, urgent["urgency"].to_numpy(), options.seed)
        metrics["urgency"].update(high_threshold=round(head.high_threshold_, 4), high_miss_cost=HIGH_MISS_COST,
                                  high_cue_bonus=HIGH_CUE_BONUS)
        step(f"urgency head fitted on all {len(urgent)} labelled tickets, high threshold {head.high_threshold_:.3f}")

    # --- agency routing (issue 4): learned agency model from real forwards and reviewers' corrections ---
    if config.agency:
        from triage.agency import train_agency

        model.agency, metrics["agency"] = train_agency(model, frame, config, options.corrections,
                                                       options.correction_weight, step)
    # --- end agency routing ---

    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    meta = {
        "dataset": config.name,
        "dataset_fingerprint": fingerprint(frame[["id", "text", "topic"]].astype(str)),
        "config": {"data": config.data, "text_column": config.text_column, "split": config.split,
                   "heads": {k: vars(v) for k, v in config.heads.items()}, "options": {
                       "features": options.features, "final_fit": options.final_fit, "topic_C": options.topic_C,
                       "recency": list(options.recency),
                       "corrections": 0 if options.corrections is None else len(options.corrections)}},
        "labels": {"topic": labels, "urgency": model.urgency_levels},
        "metrics": metrics,
    }
    files = {"report.md": evaluate.markdown_report(metrics).encode("utf-8")}
    files["metrics.json"] = json.dumps(metrics, ensure_ascii=False, indent=2).encode("utf-8")
    files.update(evaluate.plots(metrics))
    path = registry.save(model, meta, models_dir, version, files, make_current=make_current)
    step(f"saved {path}")
    return path, metrics
