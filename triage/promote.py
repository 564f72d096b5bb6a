"""Promote a newly trained model only if it is not worse than the current one on the same held-out set.

Both models are scored on the test part of the base dataset (the split the config defines),
leaving out the cases reviewers corrected (their labels changed, so the two models would not
be judged on the same truth). The decision metric is topic micro-F1; macro-F1 is printed too.
Note that a shipped model is refitted on all labelled rows, test part included, so these scores
are optimistic for both models alike; the honest held-out numbers are each model's own
``metrics.json``, printed next to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from triage import evaluate, registry
from triage.data import DatasetConfig, load_dataset
from triage.errors import ModelError
from triage.training import TrainOptions, _binarize, _split, train

Log = Callable[[str], None]


@dataclass
class Comparison:
    """Scores of the current and the candidate model on one held-out set, and the decision."""

    rows: int
    current: dict[str, Any] | None
    candidate: dict[str, Any]
    promoted: bool
    reason: str


def held_out(config: DatasetConfig, exclude_ids: set[str] | None = None) -> pd.DataFrame:
    """The base dataset's test part (as training splits it), without the excluded ids."""
    frame, _report = load_dataset(config)
    labelled = frame[frame["topic"].map(bool)].reset_index(drop=True)
    _tr, _va, te, _desc = _split(labelled, config)
    test = labelled.loc[te]
    if exclude_ids:
        test = test[~test["id"].astype(str).isin(exclude_ids)]
    return test.reset_index(drop=True)


def score(model: Any, test: pd.DataFrame, labels: list[str]) -> dict[str, Any]:
    """Topic micro/macro F1 of a model on a held-out frame, over a shared label list."""
    preds = model.predict(test["text"].tolist())
    Y = _binarize(test["topic"], labels)
    D = _binarize(pd.Series([p["topics"] for p in preds]), labels)
    m = evaluate.multilabel_metrics(Y, D, labels)
    return {"micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"], "rows": m["rows"]}


def _trained_metrics(meta: dict[str, Any]) -> dict[str, Any]:
    t = meta.get("metrics", {}).get("topic", {}).get("test", {})
    return {"micro_f1": t.get("micro_f1"), "macro_f1": t.get("macro_f1")}


def compare_and_promote(models_dir: Path, candidate: Path, config: DatasetConfig, exclude_ids: set[str] | None = None,
                        tolerance: float = 0.0, log: Log = print) -> Comparison:
    """Score the candidate version against ``models_dir/current``; point ``current`` at it if not worse.

    ``tolerance`` is how much lower the candidate's micro-F1 may be and still count as not worse.
    """
    cand_model, cand_meta = registry.load(candidate)
    try:
        cur_model, cur_meta = registry.load(models_dir / "current")
    except ModelError:
        cur_model = cur_meta = None
    test = held_out(config, exclude_ids)
    if len(test) == 0:
        raise ModelError("the held-out set is empty; cannot compare models")
    labels = sorted(set(cand_model.topic_labels) | set(cur_model.topic_labels if cur_model else [])
                    | {lab for labs in test["topic"] for lab in labs})
    cand = score(cand_model, test, labels)
    cur = score(cur_model, test, labels) if cur_model is not None else None
    log(f"held-out set: {len(test)} tickets from the test part of {config.name} (corrected ones left out)")
    if cur is not None and cur_meta is not None:
        log(f"  current   {cur_meta['version']}: micro-F1 {cur['micro_f1']:.4f} macro-F1 {cur['macro_f1']:.4f} "
            f"(its training report: {_trained_metrics(cur_meta)})")
    log(f"  candidate {cand_meta['version']}: micro-F1 {cand['micro_f1']:.4f} macro-F1 {cand['macro_f1']:.4f} "
        f"(its training report: {_trained_metrics(cand_meta)})")
    if cur is None:
        promoted, reason = True, "no current model"
    elif cand["micro_f1"] >= cur["micro_f1"] - tolerance:
        promoted, reason = True, f"micro-F1 {cand['micro_f1']:.4f} >= {cur['micro_f1']:.4f} - {tolerance}"
    else:
        promoted, reason = False, f"micro-F1 {cand['micro_f1']:.4f} < {cur['micro_f1']:.4f} - {tolerance}"
    if promoted:
        registry.set_current(models_dir, cand_meta["version"])
        log(f"promoted {cand_meta['version']} to {models_dir / 'current'} ({reason})")
    else:
        log(f"kept {cur_meta['version'] if cur_meta else '?'}: the candidate is worse ({reason}); "
            f"it stays in {candidate}")
    return Comparison(len(test), cur, cand, promoted, reason)


def train_and_promote(config: DatasetConfig, models_dir: Path, options: TrainOptions, tolerance: float = 0.0,
                      log: Log = print) -> tuple[Path, Comparison | None]:
    """Train a version; make it current at once if there is none, else only if it is not worse."""
    has_current = (models_dir / "current").exists()
    path, _metrics = train(config, models_dir, options, log=log, make_current=not has_current)
    if not has_current:
        log(f"no current model before: {path.name} is now current")
        return path, None
    exclude = set(options.corrections["id"].astype(str)) if options.corrections is not None else set()
    return path, compare_and_promote(models_dir, path, config, exclude, tolerance, log)

