"""Promote a newly trained model only if it is not worse than the current one on rows neither saw.

Every shipped fit leaves out a frozen evaluation slice (``triage.training.FrozenRule``: the
newest two weeks of a time-ordered dataset and a quarter of reviewers' corrections, chosen by id
hash) and records what it was fitted on (``trained_rows.npz``: hashes of row ids and normalised
texts). The gate rebuilds the frozen slice from the dataset and the corrections of the run, keeps
only the rows that NEITHER model's record contains (by id or by text: a repeated complaint text
counts as seen), scores both models there and prints which rows those were. The decision metric
is topic micro-F1; macro-F1 is printed too. A current model without a training record cannot be
compared honestly: the candidate is then not promoted unless ``force`` is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage import evaluate, registry
from triage.data import DatasetConfig, load_dataset
from triage.errors import ModelError
from triage.text import normalize_many
from triage.training import (
    TRAINED_ROWS_FILE,
    FrozenRule,
    TrainOptions,
    _binarize,
    frozen_slice,
    stable_hash,
    train,
)

Log = Callable[[str], None]


@dataclass
class Comparison:
    """Scores of the current and the candidate model on the rows neither trained on, and the decision."""

    rows: int
    current: dict[str, Any] | None
    candidate: dict[str, Any]
    promoted: bool
    reason: str
    ids: list[str]


@dataclass
class TrainedRows:
    """What a shipped model was fitted on, as hashes (``trained_rows.npz`` in its folder)."""

    ids: set[int]
    texts: set[int]

    @classmethod
    def load(cls, model_dir: Path) -> TrainedRows | None:
        path = registry.resolve(model_dir) / TRAINED_ROWS_FILE
        if not path.exists():
            return None
        with np.load(path) as z:
            return cls(set(z["id_hash"].tolist()), set(z["text_hash"].tolist()))

    def seen(self, ids: list[str], norm_texts: list[str]) -> np.ndarray:
        """True where a row's id or its normalised text was among the training rows."""
        id_seen = np.array([h in self.ids for h in stable_hash(ids).tolist()], dtype=bool)
        text_seen = np.array([h in self.texts for h in stable_hash(norm_texts).tolist()], dtype=bool)
        return id_seen | text_seen


def comparison_rows(config: DatasetConfig, corrections: pd.DataFrame | None, rule: FrozenRule,
                    trained: list[TrainedRows]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The frozen slice minus every row any of ``trained`` saw; and how many rows each record removed."""
    frame, _report = load_dataset(config)
    labelled = frame[frame["topic"].map(bool)].reset_index(drop=True)
    rows = frozen_slice(labelled, corrections, rule)
    rows["norm"] = normalize_many(rows["text"].tolist())
    keep = np.ones(len(rows), dtype=bool)
    removed: dict[str, int] = {"frozen": len(rows)}
    for k, record in enumerate(trained):
        seen = record.seen(rows["id"].astype(str).tolist(), rows["norm"].tolist())
        removed[f"seen_by_model_{k}"] = int(seen.sum())
        keep &= ~seen
    return rows[keep].reset_index(drop=True), removed


def score(model: Any, test: pd.DataFrame, labels: list[str]) -> dict[str, Any]:
    """Topic micro/macro F1 of a model on a held-out frame, over a shared label list."""
    preds = model.predict(test["text"].tolist())
    Y = _binarize(test["topic"], labels)
    D = _binarize(pd.Series([p["topics"] for p in preds]), labels)
    m = evaluate.multilabel_metrics(Y, D, labels)
    return {"micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"], "rows": m["rows"]}


def _describe_rows(rows: pd.DataFrame) -> str:
    base = rows[rows["source"] == "base"]
    span = f"{base['time'].astype(str).min()[:10]}..{base['time'].astype(str).max()[:10]}" \
        if len(base) and base["time"].notna().all() else "no time"
    digest = hashlib.sha256("\n".join(sorted(rows["id"].astype(str))).encode()).hexdigest()[:12]
    first = ", ".join(sorted(rows["id"].astype(str))[:5])
    return (f"{len(rows)} rows = {len(base)} frozen tickets ({span}) + {int((rows['source'] == 'correction').sum())} "
            f"held-out reviewer corrections; ids {first}, ... (sha256 of the sorted ids {digest})")


def compare_and_promote(models_dir: Path, candidate: Path, config: DatasetConfig,
                        corrections: pd.DataFrame | None = None, tolerance: float = 0.0, log: Log = print,
                        force: bool = False) -> Comparison:
    """Score the candidate against ``models_dir/current`` on rows neither trained on; promote if not worse.

    ``corrections`` are the reviewers' corrections of this run (their held-out share joins the
    frozen slice with the reviewers' labels). ``tolerance`` is how much lower the candidate's
    micro-F1 may be and still count as not worse.
    """
    cand_model, cand_meta = registry.load(candidate)
    try:
        cur_model, cur_meta = registry.load(models_dir / "current")
    except ModelError:
        cur_model = cur_meta = None
    if cur_model is None or cur_meta is None:
        registry.set_current(models_dir, cand_meta["version"])
        log(f"promoted {cand_meta['version']}: there was no current model")
        return Comparison(0, None, {}, True, "no current model", [])
    cand_rows, cur_rows = TrainedRows.load(candidate), TrainedRows.load(models_dir / "current")
    frame, _ = load_dataset(config)
    rule = FrozenRule.from_config(config, frame)
    if cand_rows is None or cur_rows is None:
        which = "current" if cur_rows is None else "candidate"
        reason = f"the {which} model has no record of its training rows, so no rows are known to be unseen by both"
        return _decide(models_dir, candidate, cand_meta, cur_meta, force, reason, log, rule)
    test, removed = comparison_rows(config, corrections, rule, [cur_rows, cand_rows])
    log(f"frozen evaluation slice ({rule.describe()}): {removed['frozen']} rows; the current model trained on "
        f"{removed['seen_by_model_0']} of them, the candidate on {removed['seen_by_model_1']} (same id or same "
        f"normalised text); those are left out")
    if len(test) == 0:
        return _decide(models_dir, candidate, cand_meta, cur_meta, force, "no frozen row is unseen by both models",
                       log, rule)
    log(f"compared on {_describe_rows(test)}; neither model trained on any of them")
    labels = sorted(set(cand_model.topic_labels) | set(cur_model.topic_labels)
                    | {lab for labs in test["topic"] for lab in labs})
    cand, cur = score(cand_model, test, labels), score(cur_model, test, labels)
    log(f"  current   {cur_meta['version']}: micro-F1 {cur['micro_f1']:.4f} macro-F1 {cur['macro_f1']:.4f}")
    log(f"  candidate {cand_meta['version']}: micro-F1 {cand['micro_f1']:.4f} macro-F1 {cand['macro_f1']:.4f}")
    if cand["micro_f1"] >= cur["micro_f1"] - tolerance:
        promoted, reason = True, f"micro-F1 {cand['micro_f1']:.4f} >= {cur['micro_f1']:.4f} - {tolerance}"
        registry.set_current(models_dir, cand_meta["version"])
        log(f"promoted {cand_meta['version']} to {models_dir / 'current'} ({reason})")
    else:
        promoted, reason = False, f"micro-F1 {cand['micro_f1']:.4f} < {cur['micro_f1']:.4f} - {tolerance}"
        log(f"kept {cur_meta['version']}: the candidate is worse ({reason}); it stays in {candidate}")
    return Comparison(len(test), cur, cand, promoted, reason, sorted(test["id"].astype(str)))


def _decide(models_dir: Path, candidate: Path, cand_meta: dict[str, Any], cur_meta: dict[str, Any], force: bool,
            why: str, log: Log, rule: FrozenRule) -> Comparison:
    """No honest comparison is possible: keep the current model unless forced."""
    if force:
        registry.set_current(models_dir, cand_meta["version"])
        log(f"promoted {cand_meta['version']} without a comparison (forced): {why}")
        return Comparison(0, None, {}, True, f"forced: {why}", [])
    log(f"kept {cur_meta['version']}: {why} (frozen slice: {rule.describe()}). The candidate stays in "
        f"{candidate}; train.py --force-promote makes it current without a comparison")
    return Comparison(0, None, {}, False, why, [])


def train_and_promote(config: DatasetConfig, models_dir: Path, options: TrainOptions, tolerance: float = 0.0,
                      log: Log = print, force: bool = False) -> tuple[Path, Comparison | None]:
    """Train a version; make it current at once if there is none, else only if it is not worse."""
    has_current = (models_dir / "current").exists()
    path, _metrics = train(config, models_dir, options, log=log, make_current=not has_current)
    if not has_current:
        log(f"no current model before: {path.name} is now current")
        return path, None
    return path, compare_and_promote(models_dir, path, config, options.corrections, tolerance, log, force)
