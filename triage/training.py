"""Training: load a configured dataset, split it honestly, fit and evaluate the heads, save.

The evaluated recipe: the topic head is fitted on the earlier part, calibrated and thresholded
on the validation part, and scored on the later test part; the urgency head is scored by nested
cross-validation and on later tickets. The shipped model is the same recipe refitted on all
labelled rows, keeping the calibration and thresholds found on the validation part (option
``final_fit="train"`` ships the evaluated model itself instead).
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import re
import sys
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
    read_label_files,
    time_split,
)
from triage.errors import DataError, ModelError
from triage.learners import TOPIC_LEARNERS
from triage.model import (
    HIGH_MISS_COST,
    URGENCY_LEVELS,
    Lexicon,
    TopicHead,
    TriageModel,
    UrgencyHead,
    analyze_words,
    fit_featurizer,
    fit_rows,
)
from triage.text import normalize_many

Log = Callable[[str], None]


@dataclass
class TrainOptions:
    """Choices for one training run."""

    features: str | None = None  # None: the config's [model] features, else "word"
    final_fit: str = "all"  # "all": refit on every labelled row; "train": ship the evaluated model
    topic_C: float | None = None  # None: the config's [model] topic_C, else 0.5
    char_ngram: tuple[int, int] | None = None  # None: the config's [model] char_ngram, else (2, 4)
    recency: tuple[float, ...] = (4.0, 2.0)  # weight of the last month, the month before; older = 1
    seed: int = 0
    corrections: pd.DataFrame | None = None
    correction_weight: int = 3
    calibrate_new_labels: bool = True  # labels first seen in validation: calibrated out of fold (TopicHead)
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


FROZEN_DAYS = 14
"""Default frozen evaluation slice of a time-ordered dataset: its newest two weeks."""
FROZEN_CORRECTIONS = 0.25
"""Default share of reviewers' corrections held back from training for the promotion gate."""
FROZEN_SHARE = 0.05
"""Default frozen share of a dataset without time (chosen by a hash of the row id)."""
TRAINED_ROWS_FILE = "trained_rows.npz"


def stable_hash(values: list[str]) -> np.ndarray:
    """A 64-bit hash per string, the same in every process and Python version."""
    return np.array([int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "little")
                     for v in values], dtype=np.uint64)


def _hash_share(ids: pd.Series, share: float) -> np.ndarray:
    """Rows whose id hashes into the first ``share`` of the range: a fixed choice for every run."""
    return (stable_hash(ids.astype(str).tolist()) / float(2**64)) < share


@dataclass
class FrozenRule:
    """Which rows are held back from every shipped fit so that two shipped models can be compared.

    From ``[split]``: ``frozen_from`` (a time: rows at or after it) or ``frozen_days`` (the newest
    days of the data, default 14) for a time-ordered dataset, ``frozen`` (a share of rows by id
    hash, default 0.05) otherwise; ``frozen_corrections`` (default 0.25) of reviewers' corrections
    by id hash. A moving window: a later dataset freezes later rows, and the gate only ever
    compares on rows that neither model's training record contains.
    """

    time_from: str | None
    share: float | None
    corrections_share: float

    @classmethod
    def from_config(cls, config: DatasetConfig, frame: pd.DataFrame) -> FrozenRule:
        spec = config.split or {}
        corr = float(spec.get("frozen_corrections", FROZEN_CORRECTIONS))
        timed = spec.get("kind", "time") == "time" and config.time_column and frame["time"].notna().any()
        if timed:
            if spec.get("frozen_from"):
                return cls(str(spec["frozen_from"]), None, corr)
            times = frame["time"].astype(str)
            newest = pd.Timestamp(times[times.str.match(r"\d{4}-\d{2}-\d{2}")].max()[:10])
            start = newest - pd.Timedelta(days=int(spec.get("frozen_days", FROZEN_DAYS)) - 1)
            return cls(start.strftime("%Y-%m-%d"), None, corr)
        return cls(None, float(spec.get("frozen", FROZEN_SHARE)), corr)

    def rows(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the frozen base rows (corrections, whose time is empty, are never base rows)."""
        if self.time_from is not None:
            t = frame["time"].astype(str)
            return ((t >= self.time_from) & t.str.match(r"\d{4}")).to_numpy()
        return _hash_share(frame["id"], self.share or 0.0)

    def held_corrections(self, corrections: pd.DataFrame | None) -> np.ndarray:
        if corrections is None or corrections.empty:
            return np.zeros(0, dtype=bool)
        return _hash_share(corrections["id"], self.corrections_share)

    def describe(self) -> str:
        base = f"tickets from {self.time_from} on" if self.time_from else f"{self.share:.0%} of rows by id hash"
        return f"{base} + {self.corrections_share:.0%} of reviewers' corrections by id hash"

    def as_dict(self) -> dict[str, Any]:
        return {"time_from": self.time_from, "share": self.share, "corrections_share": self.corrections_share}


def frozen_slice(frame: pd.DataFrame, corrections: pd.DataFrame | None, rule: FrozenRule) -> pd.DataFrame:
    """The frozen evaluation rows: base rows the rule freezes (minus corrected ones) and held-back
    corrections (with the reviewers' labels); column ``source`` says which."""
    corr_ids: set[str] = set() if corrections is None else set(corrections["id"].astype(str))
    base = frame[rule.rows(frame) & ~frame["id"].astype(str).isin(corr_ids).to_numpy()].assign(source="base")
    parts = [base]
    if corrections is not None and not corrections.empty:
        held = corrections[rule.held_corrections(corrections)]
        parts.append(held.assign(source="correction"))
    out = pd.concat(parts, ignore_index=True)
    return out[out["topic"].map(lambda labs: isinstance(labs, list) and bool(labs))].reset_index(drop=True)


def trained_rows_file(ids: list[str], norm_texts: list[str]) -> bytes:
    """The record of what a shipped topic head was fitted on: hashes of row ids and normalised texts."""
    buf = io.BytesIO()
    np.savez(buf, id_hash=stable_hash(ids), text_hash=stable_hash(norm_texts))
    return buf.getvalue()


def urgency_metrics(y: np.ndarray, pred: list[str], weight: np.ndarray | None = None) -> dict[str, Any]:
    """Recall and precision of high, share flagged high, macro-F1 and the confusion counts.

    With ``weight`` (inverse sampling probability, pool/drawn) the numbers estimate the population
    the rows were sampled from; the confusion counts stay raw.
    """
    pred_a = np.array(pred)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    hi_true, hi_pred = y == "high", pred_a == "high"
    return {
        "rows": len(y),
        "high_rows": int(hi_true.sum()),
        "high_recall": round(float(w[hi_true & hi_pred].sum() / max(w[hi_true].sum(), 1e-9)), 4),
        "high_precision": round(float(w[hi_true & hi_pred].sum() / max(w[hi_pred].sum(), 1e-9)), 4),
        "flagged_high_share": round(float(w[hi_pred].sum() / max(w.sum(), 1e-9)), 4),
        "macro_f1": round(float(f1_score(y, pred_a, labels=list(URGENCY_LEVELS), average="macro", zero_division=0,
                                         sample_weight=w)), 4),
        "confusion": {t: {p: int(((y == t) & (pred_a == p)).sum()) for p in URGENCY_LEVELS} for t in URGENCY_LEVELS},
    }


def cpu_seconds() -> float:
    """CPU time of this process, its live worker processes (joblib's) and the ones that ended."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + usage.ru_utime + usage.ru_stime
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    except ImportError:
        pass
    return total


TOPIC_EXTRA_SETTINGS = {"learner": str, "logreg_C": float, "avg_weight": float, "min_df": int, "sublinear_tf": bool,
                        "dedup": str}
"""Further ``[model]`` settings of a dataset config: the topic head's learner (``TopicHead.learner``,
``logreg_C``, ``avg_weight``), the TF-IDF's ``min_df`` and ``sublinear_tf`` (``make_featurizer``), and
which repeated texts the topic fits see once (``dedup``: "exact" or "letters", ``distinct_texts``)."""
DEDUP_KINDS = ("exact", "letters")
_NOT_LETTERS = re.compile(r"[\W\d_]+")


def letters_key(norm: str) -> str:
    """A normalised text's letters only: texts that differ in digits, spaces or punctuation share a key."""
    return _NOT_LETTERS.sub("", norm)


def distinct_texts(rows: pd.DataFrame, dedup: str = "exact") -> pd.DataFrame:
    """The rows a topic fit sees: each normalised text once (the latest row), and with ``dedup="letters"``
    each text's letters once (tickets filed again with another house number or date add time, not signal)."""
    out = rows.drop_duplicates(subset=["norm"], keep="last")
    if dedup == "letters":
        out = out[~out["norm"].map(letters_key).duplicated(keep="last")]
    elif dedup != "exact":
        raise DataError(f"[model] dedup {dedup!r} is not one of {list(DEDUP_KINDS)}")
    return out


def topic_settings(config: DatasetConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config's extra ``[model]`` settings split into TopicHead and featurizer keyword arguments."""
    model = config.model or {}
    for k, kind in TOPIC_EXTRA_SETTINGS.items():
        if k in model and kind is bool and not isinstance(model[k], bool):
            raise DataError(f"[model] {k} must be true or false, got {model[k]!r}")
    chosen = {k: kind(model[k]) for k, kind in TOPIC_EXTRA_SETTINGS.items() if k in model}
    head = {k: v for k, v in chosen.items() if k in ("learner", "logreg_C", "avg_weight")}
    if chosen.get("dedup", "exact") not in DEDUP_KINDS:
        raise DataError(f"[model] dedup {chosen['dedup']!r} is not one of {list(DEDUP_KINDS)}")
    feats = {k: v for k, v in chosen.items() if k in ("min_df", "sublinear_tf")}
    if "learner" in head and head["learner"] not in TOPIC_LEARNERS:
        raise DataError(f"[model] learner {head['learner']!r} is not one of {list(TOPIC_LEARNERS)}")
    return head, feats


def with_config_defaults(options: TrainOptions, config: DatasetConfig) -> TrainOptions:
    """Options left unset take the dataset config's ``[model]`` values (a dataset's own best settings
    live in its config, not in code), else the built-in defaults."""
    from dataclasses import replace

    model = config.model or {}
    known = {"features", "topic_C", "char_ngram", *TOPIC_EXTRA_SETTINGS}
    if set(model) - known:
        raise DataError(f"[model] knows only {sorted(known)}; got {sorted(model)}")
    return replace(
        options,
        features=options.features or str(model.get("features", "word")),
        topic_C=options.topic_C if options.topic_C is not None else float(model.get("topic_C", 0.5)),
        char_ngram=options.char_ngram or tuple(model.get("char_ngram", (2, 4))),
    )


def _load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class Clock:
    """Wall-clock (and CPU) time per training stage, logged as it goes and kept for the report.

    The CPU seconds include joblib's worker processes while they live; on a shared machine the
    wall-clock time depends on the load, the CPU time much less.
    """

    def __init__(self, log: Log) -> None:
        self.log = log
        self.started = self.last = time.perf_counter()
        self.cpu_started = self.cpu_last = cpu_seconds()
        self.load_started = _load_average()  # other processes slow the wall-clock times: said in the report
        self.stages: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def step(self, msg: str, stage: str | None = None) -> None:
        """Log ``msg``; with ``stage``, the time since the previous stage's step is booked to that stage."""
        now = time.perf_counter()
        if stage:
            cpu = cpu_seconds()
            self.stages[stage] = round(self.stages.get(stage, 0.0) + now - self.last, 1)
            self.cpu[stage] = round(self.cpu.get(stage, 0.0) + cpu - self.cpu_last, 1)
            msg = f"{msg} ({now - self.last:.1f} s)"
            self.last, self.cpu_last = now, cpu
        self.log(f"[{now - self.started:6.1f}s] {msg}")

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 1)

    def summary(self) -> str:
        per = ", ".join(f"{k} {v} ({self.cpu.get(k, 0.0)})" for k, v in self.stages.items())
        return (f"seconds per stage, wall (CPU): {per}; total {self.total()} ({round(cpu_seconds() - self.cpu_started, 1)}); "
                f"load average {self.load_started} at the start, {_load_average()} at the end")


class Beside:
    """``fn(log)`` in a forked process while this one goes on; ``result()`` waits for ``(value, lines)``.

    The agency stage runs on one core for about 50 s on the Traffy data and needs only the shipped
    topic head, so it runs beside the urgency stages (issue 12: training under 3 minutes on 2 cores).
    Its log lines are collected in the child and handed back with its result, so the caller logs
    them in order wherever its log goes. An exception in the child is raised again by ``result()``.
    Where ``fork`` is not available, or with ``TRIAGE_TRAIN_BESIDE=0``, ``fn`` runs in this process
    when ``result()`` is called (the same numbers, one after the other).
    """

    def __init__(self, fn: Callable[[Callable[[str], None]], Any]) -> None:
        self.fn = fn
        self.proc: Any = None
        self.seconds = 0.0
        self.started = time.perf_counter()
        if os.environ.get("TRIAGE_TRAIN_BESIDE", "1") == "0" or "fork" not in multiprocessing.get_all_start_methods():
            return
        ctx = multiprocessing.get_context("fork")
        self.conn, child_end = ctx.Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()  # nothing buffered is written twice by the child
        self.proc = ctx.Process(target=self._child, args=(child_end,), name="triage-train-beside")
        self.proc.start()
        child_end.close()

    def _run(self) -> tuple[Any, list[str], float]:
        lines: list[str] = []
        start = time.perf_counter()
        value = self.fn(lines.append)
        return value, lines, time.perf_counter() - start

    def _child(self, conn: Any) -> None:
        try:
            out: tuple[str, Any] = ("ok", self._run())
        except BaseException as exc:  # handed to the parent, which raises it
            out = ("error", exc)
        try:
            conn.send(out)
        except Exception as exc:  # the value or the exception could not be pickled
            conn.send(("error", ModelError(f"the agency stage's result could not be handed back: {exc}")))
        conn.close()

    def result(self) -> tuple[Any, list[str], float]:
        if self.proc is None:
            return self._run()
        try:
            kind, value = self.conn.recv()
        except EOFError:
            self.proc.join()
            raise ModelError(f"the agency stage's process ended without a result (exit code {self.proc.exitcode})") \
                from None
        finally:
            self.conn.close()
        self.proc.join()
        if kind == "error":
            raise value
        return value

    def cancel(self) -> None:
        """Stop the child (this process failed before it asked for the result)."""
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


def _urgency_design(model: TriageModel, head: UrgencyHead, norm: list[str],
                    analyzed: dict[str, list[str]] | None = None, fit_rows: np.ndarray | None = None) -> Any:
    """The urgency design of ``norm``; the head's character n-grams are fitted on ``fit_rows`` (default all)."""
    X = model.featurize(norm, analyzed)
    rows = np.ones(len(norm), dtype=bool) if fit_rows is None else np.asarray(fit_rows, dtype=bool)
    # words in at least two training rows (a word of one ticket can only memorise it: 54k -> 18k columns)
    head.select_words(model.word_block(X)[np.flatnonzero(rows)], min_df=2)
    head.fit_chars([t for t, keep in zip(norm, rows) if keep])
    return head.design(norm, model.topic.proba(X), model.word_block(X))


SHARE_LEFT_OUT = ("cue",)
"""Sampling strata whose rows the urgency head's flagged share (``HIGH_SHARE``) is not counted on:
the ``cue`` stratum of ``labels/urgency-2022-cue.csv`` was drawn because its texts matched a danger
cue (26% high, against 8% of a month's tickets), so it is for learning, not for the operating point
(``UrgencyHead._choose_threshold``)."""


def share_rows(strata: pd.DataFrame | None, n: int) -> np.ndarray | None:
    """The rows the urgency head's flagged share is counted on (None: all rows count)."""
    if strata is None or "stratum" not in strata or len(strata) != n:
        return None
    keep = ~strata["stratum"].isin(SHARE_LEFT_OUT).to_numpy()
    return None if keep.all() else keep


def _fold_predictions(Z: Any, y: np.ndarray, tr: np.ndarray, te: np.ndarray, head: UrgencyHead,
                      seed: int) -> list[str]:
    fold = UrgencyHead(list(URGENCY_LEVELS), head.lexicon, C=head.C, cue_bonus=head.cue_bonus,
                       high_share=head.high_share, word_cols_=head.word_cols_).fit(Z[tr], y[tr], seed)
    return fold.decide(fold.proba(Z[te]), Z[te])


def _urgency_reports(y: np.ndarray, pred: list[str], strata: pd.DataFrame | None) -> dict[str, Any]:
    """Metrics on all rows and, when the rows carry a sampling design, on the random stratum reweighted."""
    out = {"all": urgency_metrics(y, pred)}
    if strata is not None and "stratum" in strata:
        random = (strata["stratum"] == "random").to_numpy()
        if random.any():
            weight = (strata["pool"].astype(float) / strata["drawn"].astype(float)).to_numpy()
            out["random_reweighted"] = urgency_metrics(y[random], list(np.array(pred, dtype=object)[random]),
                                                       weight[random])
    return out


def _sampling_design(config: DatasetConfig, urgent: pd.DataFrame) -> pd.DataFrame | None:
    """Per urgency row: stratum, pool, drawn from the label files (rows without a design: stratum "other")."""
    head = config.heads.get("urgency")
    if head is None or not head.file:
        return None
    table = read_label_files(config, head)
    if "stratum" not in table.columns:
        return None
    ids = urgent["id"].astype(str)
    design = pd.DataFrame({"stratum": ids.map(table["stratum"].to_dict()).fillna("other").to_numpy(),
                           "pool": ids.map(table["pool"].to_dict()).fillna(1).to_numpy(),
                           "drawn": ids.map(table["drawn"].to_dict()).fillna(1).to_numpy()})
    return design


def evaluate_urgency(model: TriageModel, frame: pd.DataFrame, norm: list[str], test_from: str | None,
                     seed: int, analyzed: dict[str, list[str]] | None = None, frozen_from: str | None = None,
                     strata: pd.DataFrame | None = None, n_jobs: int = 2) -> tuple[dict[str, Any], np.ndarray]:
    """Nested cross-validation (threshold chosen inside each training fold) and a later-tickets test.

    With ``frozen_from`` (``[split] urgency_frozen_from``), every labelled ticket from that time on
    is a frozen test: cross-validation runs on the earlier tickets only, and a model fitted on them
    all is scored once on the frozen ones. ``strata`` (stratum, pool, drawn per row) adds estimates
    reweighted to the random sample. Returns the metrics and the mask of rows the head may train on.
    Every logistic fit (5 outer folds x (5 inner + 1), and the 6 of the head scored on the frozen
    rows) runs in one pool of ``n_jobs`` processes: nested, five outer folds on two processes left
    one idle in the last round (24.1 s wall for 40.7 CPU s).
    """
    from joblib import Parallel, delayed

    y = frame["urgency"].to_numpy()
    times = frame["time"].astype(str)
    fit = (times < frozen_from).to_numpy() if frozen_from else np.ones(len(y), dtype=bool)
    head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load())
    Z = _urgency_design(model, head, norm, analyzed, fit)  # character n-grams never from the frozen rows
    idx = np.flatnonzero(fit)
    Zf, yf = Z[idx], y[idx]
    pred = np.empty(len(yf), dtype=object)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(yf)), yf))
    heads = [UrgencyHead(list(URGENCY_LEVELS), head.lexicon, C=head.C, cue_bonus=head.cue_bonus,
                         high_share=head.high_share, word_cols_=head.word_cols_) for _ in folds]
    jobs = [(k, tr if rows is None else tr[rows]) for k, (tr, _te) in enumerate(folds)
            for rows in heads[k].fit_tasks(yf[tr], seed)]
    frozen = bool(frozen_from and (~fit).any())
    if frozen:
        final = UrgencyHead(list(URGENCY_LEVELS), head.lexicon, C=head.C, cue_bonus=head.cue_bonus,
                            high_share=head.high_share, word_cols_=head.word_cols_)
        jobs += [(len(folds), rows) for rows in final.fit_tasks(yf, seed)]
    clfs = Parallel(n_jobs=n_jobs)(delayed(fit_rows)(head, Zf, yf, rows) for _k, rows in jobs)
    sub = strata.iloc[idx].reset_index(drop=True) if strata is not None else None
    counted = share_rows(sub, len(yf))  # the rows the flagged share is counted on (None: all)
    for k, (tr, te) in enumerate(folds):
        fold = heads[k].fit_with(Zf[tr], yf[tr], [c for (j, _r), c in zip(jobs, clfs) if j == k], seed,
                                 None if counted is None else counted[tr])
        pred[te] = fold.decide(fold.proba(Zf[te]), Zf[te])
    out: dict[str, Any] = {}
    if counted is not None and sub is not None:  # the cue stratum apart: "cross_validated" on the mix before it
        cue = ~counted
        out["cross_validated_cue_stratum"] = urgency_metrics(yf[cue], list(pred[cue]))
        yf_r, pred_r, sub_r = yf[counted], pred[counted], sub.iloc[np.flatnonzero(counted)].reset_index(drop=True)
    else:
        yf_r, pred_r, sub_r = yf, pred, sub
    reports = _urgency_reports(yf_r, list(pred_r), sub_r)
    out["cross_validated"] = reports["all"]
    if "random_reweighted" in reports:
        out["cross_validated_random_reweighted"] = reports["random_reweighted"]
    if frozen:
        final.fit_with(Zf, yf, [c for (j, _r), c in zip(jobs, clfs) if j == len(folds)], seed, counted)
        rest = np.flatnonzero(~fit)
        frozen_pred = final.decide(final.proba(Z[rest]), Z[rest])
        reports = _urgency_reports(y[rest], frozen_pred, strata.iloc[rest].reset_index(drop=True)
                                   if strata is not None else None)
        out["frozen_test"] = reports["all"] | {"from": frozen_from}
        if "random_reweighted" in reports:
            out["frozen_test_random_reweighted"] = reports["random_reweighted"]
    elif test_from and frame["time"].notna().all():
        later = (times >= test_from).to_numpy()
        if later.sum() and (~later).sum() and (y[later] == "high").any():
            fold = UrgencyHead(list(URGENCY_LEVELS), head.lexicon, word_cols_=head.word_cols_).fit(
                Z[~later], y[~later], seed)
            out["time_ordered"] = urgency_metrics(y[later], fold.decide(fold.proba(Z[later]), Z[later]))
    return out, fit


BLAS_THREADS = 1
"""BLAS threads while training. The logistic regressions (urgency, agency, Platt scaling) call
OpenBLAS on small vectors in every L-BFGS step; with its default two threads per process on a
shared 2-core machine the threads spin and a fit took 7-8 CPU s instead of 1 (measured on the
urgency design, 3,845 x 54k: 7.07 s CPU / 25.6 s wall with 2 threads, 1.08 s / 4.5 s with one,
load average 9). The parallel parts use processes (joblib), not BLAS threads."""


def train(config: DatasetConfig, models_dir: Path, options: TrainOptions | None = None, log: Log = print,
          make_current: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train every head the dataset config defines, evaluate on held-out data, save a version."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        return _train(config, models_dir, options, log, make_current)


def _train(config: DatasetConfig, models_dir: Path, options: TrainOptions | None, log: Log,
           make_current: bool) -> tuple[Path, dict[str, Any]]:
    options = with_config_defaults(options or TrainOptions(), config)
    features: str = options.features or "word"
    topic_C: float = options.topic_C if options.topic_C is not None else 0.5
    char_ngram: tuple[int, int] = options.char_ngram or (2, 4)
    head_opts, feat_opts = topic_settings(config)
    clock = Clock(log)
    step = clock.step

    frame, report = load_dataset(config)
    # The frozen slice (newest rows + a share of corrections) is held back from every fit below
    # except the evaluated recipe's own time split, so the promotion gate can compare two shipped
    # models on rows neither saw (triage.promote).
    rule = FrozenRule.from_config(config, frame)
    held = rule.held_corrections(options.corrections)
    corrections = options.corrections[~held] if options.corrections is not None else None
    if held.any() and options.corrections is not None:
        frame = frame[~frame["id"].astype(str).isin(set(options.corrections[held]["id"].astype(str)))]
    frame = apply_corrections(frame, corrections, options.correction_weight)
    step(f"loaded {config.name}: {report.summary()}", "load")
    if "topic" not in config.heads:
        raise DataError(f"dataset config {config.name!r} has no topic head; the model needs one")
    texts = frame["text"].tolist()
    distinct = list(dict.fromkeys(texts))  # 16% of Traffy's texts are repeats: each is normalised once
    normalised = dict(zip(distinct, normalize_many(distinct)))
    frame["norm"] = [normalised[t] for t in texts]
    step(f"normalised {len(distinct)} distinct texts", "normalise")

    labelled = frame[frame["topic"].map(bool)].reset_index(drop=True)
    if len(labelled) < 20:
        raise DataError(f"only {len(labelled)} rows have a topic label; at least 20 are needed")
    tr, va, te, split_desc = _split(labelled, config)
    # Label set from every labelled row: a label that first appears after the training period
    # (PM2.5 in late 2022) is still learned by the shipped refit; the evaluated model cannot
    # predict it, which the test report shows honestly.
    labels = sorted({lab for labs in labelled["topic"] for lab in labs})
    multi = bool(labelled["topic"].map(len).gt(1).any())
    dedup = str((config.model or {}).get("dedup", "exact"))
    train_rows = distinct_texts(labelled.loc[tr], dedup)  # repeated texts add time, not signal
    step(f"split {split_desc}: train {len(tr)} ({len(train_rows)} distinct texts), validation {len(va)}, "
         f"test {len(te)}; {len(labels)} topic labels, {'multi' if multi else 'single'}-label", "split")
    urgent = frame[frame.get("urgency", pd.Series(dtype=object)).notna()].reset_index(drop=True) \
        if "urgency" in frame.columns else frame.iloc[0:0]
    # every text that is featurised below, tokenised once
    analyzed = analyze_words(labelled["norm"].tolist() + urgent["norm"].tolist()) \
        if features in ("word", "both") else None
    step(f"tokenised {len(analyzed or {})} distinct texts", "tokenise")

    featurizer, X_train = fit_featurizer(features, train_rows["norm"].tolist(), analyzed,
                                          char_ngram, **feat_opts)
    step(f"features: {X_train.shape[1]} ({features})", "topic: features (train)")
    topic = TopicHead(labels, multi, C=topic_C, **head_opts).fit(X_train, _binarize(train_rows["topic"], labels),
                                                    recency_weights(train_rows["time"], options.recency), options.seed)
    step("topic head fitted on train", "topic: fit (train)")
    version = registry.new_version(config.name)
    model = TriageModel(version, featurizer, topic)
    X_valid = model.featurize(labelled.loc[va, "norm"].tolist(), analyzed)
    topic.calibrate(X_valid, _binarize(labelled.loc[va, "topic"], labels))
    step("topic head calibrated and thresholded on validation", "topic: calibrate (validation)")
    # Refit on train + validation with the calibration and thresholds found on validation, so that
    # the evaluated model knows the most recent month (labels such as ป้าย first appear there).
    recent = distinct_texts(labelled.loc[tr.append(va)], dedup)
    featurizer, X_recent = fit_featurizer(features, recent["norm"].tolist(), analyzed,
                                           char_ngram, **feat_opts)
    if options.calibrate_new_labels and multi:
        recent_w = recency_weights(recent["time"], options.recency)
        in_valid = recent.index.isin(va)
        new = topic.calibrate_new_labels(X_recent, _binarize(recent["topic"], labels), in_valid, recent_w, options.seed)
        if new:
            step(f"labels new in validation ({', '.join(new)}) calibrated on out-of-fold validation scores",
                 "topic: calibrate new labels")
    refit = TopicHead(labels, multi, C=topic_C, **head_opts)
    refit.calibration_, refit.thresholds_ = topic.calibration_, topic.thresholds_
    topic = refit.fit(X_recent, _binarize(recent["topic"], labels), recency_weights(recent["time"], options.recency),
                      options.seed)
    model = TriageModel(version, featurizer, topic)
    step(f"topic head refitted on train + validation ({len(recent)} distinct texts)", "topic: refit (train + validation)")
    X_test = model.featurize(labelled.loc[te, "norm"].tolist(), analyzed)
    Y_test = _binarize(labelled.loc[te, "topic"], labels)
    P_test = topic.proba(X_test)
    D_test = topic.decide(P_test)
    step("topic head scored on test", "topic: score (test)")
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
    step(f"topic test: micro-F1 {t['micro_f1']} macro-F1 {t['macro_f1']} (ECE {metrics['topic']['calibration']['ece']})",
         "topic: report")

    evaluated = model  # the recipe's model (train + validation): the urgency head is evaluated with its topics
    frozen = rule.rows(labelled)
    shipped_rows = recent
    if options.final_fit == "all":
        everything = distinct_texts(labelled[~frozen], dedup)
        shipped_rows = everything
        final_featurizer, X_all = fit_featurizer(features, everything["norm"].tolist(),
                                                   analyzed, char_ngram, **feat_opts)
        final_topic = TopicHead(labels, multi, C=topic_C, **head_opts)
        final_topic.calibration_, final_topic.thresholds_ = topic.calibration_, topic.thresholds_
        final_topic.fit(X_all, _binarize(everything["topic"], labels), recency_weights(everything["time"], options.recency),
                        options.seed)
        model = TriageModel(version, final_featurizer, final_topic)
        step(f"refitted topic head on all {len(everything)} distinct labelled texts except the frozen slice "
             f"({int(frozen.sum())} rows: {rule.describe()})", "topic: final fit")
    held_out = frozen_slice(labelled, options.corrections, rule) if options.final_fit == "all" else labelled.iloc[0:0]
    if len(held_out):
        P_frozen = model.topic.proba(model.featurize(normalize_many(held_out["text"].tolist()), analyzed))
        m = evaluate.multilabel_metrics(_binarize(held_out["topic"], labels), model.topic.decide(P_frozen), labels)
        metrics["frozen"] = {"rule": rule.as_dict(), "describe": rule.describe(), "rows": len(held_out),
                             "corrections": int((held_out["source"] == "correction").sum()),
                             "micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"]}
        step(f"shipped topic head on the frozen slice ({len(held_out)} rows it never saw): micro-F1 {m['micro_f1']} "
             f"macro-F1 {m['macro_f1']}", "topic: score (frozen slice)")
    # --- agency routing (issue 4): learned agency model from real forwards and reviewers' corrections ---
    # It reads only the shipped topic head (not urgency), so it runs in a forked process beside the
    # urgency stages, which then fit in this process alone: two busy processes on two cores (Beside).
    agency_job: Beside | None = None
    if config.agency:
        from triage.agency import train_agency

        shipped_topics = model
        agency_job = Beside(lambda log_line: train_agency(shipped_topics, frame, config, corrections,
                                                          options.correction_weight, log_line))
    urgency_jobs = 1 if agency_job is not None and agency_job.proc is not None else 2
    try:
        test_from = str(config.split.get("test_from")) if config.split.get("test_from") else None
        urgency_fit = np.ones(len(urgent), dtype=bool)
        if "urgency" in config.heads and len(urgent) >= 50:
            frozen_from = config.split.get("urgency_frozen_from")
            metrics["urgency"], urgency_fit = evaluate_urgency(
                evaluated, urgent, urgent["norm"].tolist(), test_from, options.seed, analyzed,
                str(frozen_from) if frozen_from else None, _sampling_design(config, urgent), urgency_jobs)
            cv = metrics["urgency"]["cross_validated"]
            step(f"urgency (5-fold nested CV on {int(urgency_fit.sum())}, scored on {cv['rows']} outside the cue stratum): "
                 f"recall(high) {cv['high_recall']} "
                 f"macro-F1 {cv['macro_f1']} flagged high {cv['flagged_high_share']}", "urgency: evaluate")
            if "frozen_test" in metrics["urgency"]:
                ft = metrics["urgency"]["frozen_test"]
                step(f"urgency frozen test ({ft['rows']} tickets from {frozen_from} on, never used for a choice): "
                     f"recall(high) {ft['high_recall']} precision(high) {ft['high_precision']} macro-F1 {ft['macro_f1']} "
                     f"flagged high {ft['flagged_high_share']}")
        if "urgency" in metrics:
            head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load())
            # the frozen urgency test month stays out of the shipped head too
            shipped = urgent[urgency_fit].reset_index(drop=True)
            Z = _urgency_design(model, head, shipped["norm"].tolist(), analyzed)
            model.urgency = head.fit(Z, shipped["urgency"].to_numpy(), options.seed, n_jobs=urgency_jobs,
                                     share_rows=share_rows(_sampling_design(config, shipped), len(shipped)))
            metrics["urgency"].update(high_threshold=round(head.high_threshold_, 4), low_bias=head.low_bias_,
                                      high_share=head.high_share,
                                      high_miss_cost=None if head.high_share is not None else HIGH_MISS_COST,
                                      high_cue_bonus=head.cue_bonus, trained_on=len(shipped))
            step(f"urgency head fitted on {len(shipped)} labelled tickets, high threshold {head.high_threshold_:.3f}, "
                 f"low when log P(low) - log P(medium) > {head.low_bias_}",
                 "urgency: final fit")
    except BaseException:
        if agency_job is not None:
            agency_job.cancel()
        raise
    if agency_job is not None:
        (model.agency, metrics["agency"]), lines, seconds = agency_job.result()
        for line in lines:
            log(line)
        step(f"agency model trained and evaluated ({seconds:.1f} s, beside the urgency stages)", "agency")
    # --- end agency routing ---

    metrics["stage_seconds"] = dict(clock.stages)
    metrics["stage_cpu_seconds"] = dict(clock.cpu)
    metrics["train_seconds"] = clock.total()
    metrics["train_cpu_seconds"] = round(cpu_seconds() - clock.cpu_started, 1)
    metrics["load_average"] = {"start": clock.load_started, "end": _load_average()}
    meta = {
        "dataset": config.name,
        "dataset_fingerprint": fingerprint(frame[["id", "text", "topic"]].astype(str)),
        "config": {"data": config.data, "text_column": config.text_column, "split": config.split,
                   "heads": {k: vars(v) for k, v in config.heads.items()}, "options": {
                       "features": features, "final_fit": options.final_fit, "topic_C": topic_C,
                       "char_ngram": list(char_ngram), **head_opts, **feat_opts, "dedup": dedup,
                       "recency": list(options.recency),
                       "corrections": 0 if options.corrections is None else len(options.corrections),
                       "corrections_held_out": int(held.sum())}},
        "frozen_rule": rule.as_dict() if options.final_fit == "all" else None,
        "labels": {"topic": labels, "urgency": model.urgency_levels},
        "metrics": metrics,
    }
    files = {"report.md": evaluate.markdown_report(metrics).encode("utf-8"),
             TRAINED_ROWS_FILE: trained_rows_file(shipped_rows["id"].astype(str).tolist(), shipped_rows["norm"].tolist())}
    files["metrics.json"] = json.dumps(metrics, ensure_ascii=False, indent=2).encode("utf-8")
    files.update(evaluate.plots(metrics))
    path = registry.save(model, meta, models_dir, version, files, make_current=make_current)
    step(f"saved {path}", "save")
    log(clock.summary())
    return path, metrics
