"""The triage model: features, the topic head, the urgency head, prediction and explanations.

Pure core: takes and returns values; saving and loading live in ``triage.registry``.

- Features: TF-IDF over newmm word 1-2-grams of normalised text (``triage.text``) by default;
  character 2-4-grams (inside word boundaries), or both, on request (``make_featurizer``); see
  README for the measurement behind this choice.
- Topic head: one-vs-rest LinearSVC (or another linear learner a config chooses, ``topic_estimator``;
  README: none did better on Traffy); each label's score is calibrated to a probability with
  Platt scaling fitted on a validation split, and each label has its own decision threshold
  tuned on that split. Every complaint gets at least its most likely label. A dataset whose rows
  all carry one label is treated as single-label (argmax).
- Urgency head: a class-weighted logistic regression over the rubric's cues
  (``resources/urgency_lexicon.toml``: regex groups, and danger as an object plus a state found on
  word tokens, with negation and "already fixed"), the topic head's probabilities, length, and word
  TF-IDF, and character 2-4-grams. ``high`` is decided on P(high) against a threshold chosen on
  out-of-fold scores so that ``HIGH_SHARE`` of them are flagged (or, with ``high_share=None``, to
  minimise cost, where a missed ``high`` costs ``HIGH_MISS_COST`` times a false alarm).

Agencies are not decided here: ``triage.prediction.predict`` routes the record afterwards.
"""

from __future__ import annotations

import re
import tomllib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from triage import fastpath
from triage.errors import ModelError
from triage.prediction import Prediction, Token
from triage.prefilter import NORMALISED, FirstOf
from triage.text import normalize_many, tokenize, word_analyzer

if TYPE_CHECKING:  # imported where a model is fitted: prediction does not need scikit-learn (triage.lightload)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion


LEXICON_PATH = Path(__file__).parent / "resources" / "urgency_lexicon.toml"
HIGH_MISS_COST = 8.0
"""How many false ``high`` alarms one missed ``high`` is worth when choosing its threshold."""
HIGH_SHARE = 0.18
"""The urgency head flags as ``high`` the top 18% of its out-of-fold scores on the training rows
(``UrgencyHead._choose_threshold``): at most 20% of tickets may be flagged, and the share a later
month gets was lower than on the training rows (``python bench/urgency_threshold.py``: flagging 18%
out of fold flagged 15.0% of 2022-11 when fitted on the months before; the former cost rule flagged
20.8% by cross-validation)."""
HIGH_CUE_BONUS = 0.0
"""A fixed amount added to P(high) when a danger cue matched. 0: the learned model carries every
cue's weight (issue 12); kept as a setting of ``UrgencyHead`` for comparison."""
URGENCY_LEVELS = ("high", "medium", "low")
URGENCY_CHAR_WEIGHT = 3.0
"""Scale of the urgency head's character 2-4-gram block (``UrgencyHead.fit_chars``): chosen by
cross-validation on the tickets before the frozen month (``python bench/urgency_design.py``: AUC of
high 0.886 without the block, 0.907 at weight 1, 0.924 at 3, 0.926 at 4)."""


FEATURE_KINDS = ("word", "char", "both")


def make_featurizer(kind: str = "word", char_ngram: tuple[int, int] = (2, 4), min_df: int = 2,
                    sublinear_tf: bool = True) -> FeatureUnion:
    """Sublinear TF-IDF over newmm word 1-2-grams ("word"), character 2-4-grams ("char"), or both.

    "word" is the default: on Traffy it scores nearly as well as "both" (0.006 lower micro-F1) at
    a third of the time (``python bench/topic_baseline.py --features char word both``). ``min_df``
    (texts a feature must be in) and ``sublinear_tf`` are dataset settings (a config's ``[model]``);
    the fast inference path reads any of them from the fitted vectorizers.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    parts: list[tuple[str, TfidfVectorizer]] = []
    if kind in ("char", "both"):
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=char_ngram, min_df=min_df,
                                              sublinear_tf=sublinear_tf, max_features=300_000, dtype=np.float32)))
    if kind in ("word", "both"):
        parts.append(("word", TfidfVectorizer(analyzer=word_analyzer, min_df=min_df, sublinear_tf=sublinear_tf,
                                              dtype=np.float32)))
    if not parts:
        raise ValueError(f"feature kind {kind!r} is not one of: {', '.join(FEATURE_KINDS)}")
    return FeatureUnion(parts, n_jobs=len(parts))


def _analyze_chunk(texts: list[str]) -> list[list[str]]:
    return [word_analyzer(t) for t in texts]


def _analyze_chunk_joined(texts: list[str]) -> list[str]:
    """Each text's words joined by newlines (a word never holds whitespace): one string per text is
    sent back to the parent instead of ~60, which made pickling most of the tokenising stage."""
    return ["\n".join(word_analyzer(t)) for t in texts]


def analyze_words(norm_texts: list[str], n_jobs: int = 2, chunk: int = 20_000) -> dict[str, list[str]]:
    """Word 1-2-grams of each distinct normalised text, tokenised once (in ``n_jobs`` processes).

    Training featurises the same texts several times (train, train + validation, everything);
    tokenising is most of a word TF-IDF fit, so it is done once here and reused through
    :class:`AnalyzedWords`.
    """
    distinct = list(dict.fromkeys(norm_texts))
    if len(distinct) < 2 * chunk or n_jobs == 1:
        return dict(zip(distinct, _analyze_chunk(distinct)))
    from joblib import Parallel, delayed

    parts = Parallel(n_jobs=n_jobs)(delayed(_analyze_chunk_joined)(distinct[i : i + chunk])
                                    for i in range(0, len(distinct), chunk))
    return dict(zip(distinct, (joined.split("\n") if joined else [] for part in parts for joined in part)))


class AnalyzedWords:
    """An analyzer that looks texts up in precomputed ``analyze_words`` output (others are analysed)."""

    def __init__(self, analyzed: dict[str, list[str]]) -> None:
        self.analyzed = analyzed

    def __call__(self, text: str) -> list[str]:
        words = self.analyzed.get(text)
        return words if words is not None else word_analyzer(text)


@contextmanager
def precomputed_words(featurizer: FeatureUnion, analyzed: dict[str, list[str]] | None) -> Iterator[None]:
    """Within the block the featurizer's word part reads ``analyzed`` instead of tokenising.

    The shipped featurizer keeps ``word_analyzer``: the swap is undone on leaving, so what is
    saved is identical to a featurizer fitted the slow way (``tests/test_model_training.py``).
    """
    vec = dict(featurizer.transformer_list).get("word")
    if vec is None or analyzed is None:
        yield
        return
    original = vec.analyzer
    vec.analyzer = AnalyzedWords(analyzed)
    try:
        yield
    finally:
        vec.analyzer = original


def fit_featurizer(kind: str, norm_texts: list[str], analyzed: dict[str, list[str]] | None = None,
                   char_ngram: tuple[int, int] = (2, 4), min_df: int = 2,
                   sublinear_tf: bool = True) -> tuple[FeatureUnion, sparse.csr_matrix]:
    """A featurizer fitted on ``norm_texts`` and their features, reusing precomputed words if given."""
    featurizer = make_featurizer(kind, char_ngram, min_df, sublinear_tf)
    with precomputed_words(featurizer, analyzed):
        X = featurizer.fit_transform(norm_texts).tocsr()
    return featurizer, X


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _best_f1_threshold(y: np.ndarray, p: np.ndarray, default: float) -> float:
    """The probability threshold with the best F1 on (y, p); ``default`` when y has few positives."""
    if y.sum() < 5:
        return default
    grid = np.linspace(0.05, 0.9, 35)
    f1 = []
    for t in grid:
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1.append(2 * tp / max(pred.sum() + y.sum(), 1))
    return float(grid[int(np.argmax(f1))])


@dataclass
class TopicHead:
    """One-vs-rest linear topic classifier with calibrated probabilities and per-label thresholds."""

    labels: list[str]
    multi_label: bool
    C: float = 0.5
    class_weight: str | None = None  # "balanced": each label's positives weigh as much as its negatives
    learner: str = "svm"  # topic_estimator: "svm", "logreg", "avg", "mhuber"
    logreg_C: float = 4.0  # the logistic regression's C ("logreg", "avg")
    avg_weight: float = 0.25  # "avg": weight of the logistic regression's coefficients
    clf_: OneVsRestClassifier | None = None
    calibration_: np.ndarray | None = None  # (K, 2): Platt a, b per label
    thresholds_: np.ndarray | None = None

    def fit(self, X: sparse.csr_matrix, Y: np.ndarray, sample_weight: np.ndarray | None = None,
            seed: int = 0) -> TopicHead:
        """Fit one LinearSVC per label; ``sample_weight`` lets recent tickets count more.

        ``seed`` fixes liblinear's coordinate order: with ``random_state=None`` each fit drew it from
        the global numpy generator of whichever joblib worker ran it, so the topic probabilities (and
        the urgency head that reads them) changed with the order of the training stages (issue 12).
        """
        import sklearn
        from sklearn.multiclass import OneVsRestClassifier

        with warnings.catch_warnings(), sklearn.config_context(enable_metadata_routing=True):
            # a label absent from this period is expected (see decision)
            warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
            svc = self._estimator(seed).set_fit_request(sample_weight=True)
            weight = np.ones(X.shape[0]) if sample_weight is None else sample_weight
            # liblinear works in float64: converted once here, not once per label (15-20% of the fit)
            self.clf_ = OneVsRestClassifier(svc, n_jobs=2).fit(X.astype(np.float64), Y, sample_weight=weight)
        if self.calibration_ is None:
            self.calibration_ = np.tile([2.0, 0.0], (len(self.labels), 1))
            self.thresholds_ = np.full(len(self.labels), 0.5)
        return self

    def _estimator(self, seed: int) -> Any:
        from triage.learners import topic_estimator

        return topic_estimator(getattr(self, "learner", "svm"), self.C, getattr(self, "class_weight", None), seed,
                               getattr(self, "logreg_C", 4.0), getattr(self, "avg_weight", 0.25))

    def decision(self, X: sparse.csr_matrix) -> np.ndarray:
        """Decision scores (n, K): per label ``X @ coef + intercept``, as ``clf_.decision_function`` gives.

        Computed directly, all labels in one sparse product (``fastpath.stacked_linear``): scikit-learn's
        per-estimator input checks cost about 0.5 ms a label per call. A label never seen positive
        (or always positive) in training scores a constant -5 (+5).
        """
        if self.clf_ is None:
            raise ModelError("the model is not fitted (clf_ is missing): retrain it with train.py")
        W, b, learned = fastpath.stacked_linear(self.clf_)
        scores = np.asarray(X @ W, dtype=float) if X.shape[0] else np.zeros((0, len(b)))
        scores += b
        scores[:, ~learned] = b[~learned]
        return scores

    def calibrate(self, X: sparse.csr_matrix, Y: np.ndarray) -> None:
        """Fit Platt scaling and thresholds per label on a validation split (never the test split)."""
        from sklearn.linear_model import LogisticRegression

        S = self.decision(X)
        pooled = LogisticRegression(C=1e4).fit(S.ravel().reshape(-1, 1), Y.ravel())
        base = [float(pooled.coef_[0, 0]), float(pooled.intercept_[0])]
        calib = np.tile(base, (len(self.labels), 1))
        if self.clf_ is None:
            raise ModelError("the model is not fitted (clf_ is missing): retrain it with train.py")
        learned = [hasattr(est, "coef_") for est in self.clf_.estimators_]
        for k in range(len(self.labels)):
            # a label the training part never saw has constant scores: keep the pooled mapping
            if learned[k] and 5 <= Y[:, k].sum() < len(Y) - 5:
                lr = LogisticRegression(C=1e4).fit(S[:, k : k + 1], Y[:, k])
                calib[k] = [float(lr.coef_[0, 0]), float(lr.intercept_[0])]
        self.calibration_ = calib
        P = self._proba_from_scores(S)
        default = _best_f1_threshold(Y.ravel(), P.ravel(), 0.5)
        self.thresholds_ = np.array([_best_f1_threshold(Y[:, k], P[:, k], default) if learned[k] else default
                                     for k in range(len(self.labels))])

    def calibrate_new_labels(self, X: sparse.csr_matrix, Y: np.ndarray, in_valid: np.ndarray,
                             sample_weight: np.ndarray | None = None, seed: int = 0, min_valid: int = 5) -> list[str]:
        """Calibrate labels that first appear in the validation part on out-of-fold validation scores.

        ``calibrate`` cannot: the training part never saw them (on Traffy, ป้าย, ห้องน้ำ, PM2.5 and
        ป้ายจราจร begin on 2022-10-18), so they got the pooled mapping and a default threshold, and were
        predicted with precision 1.0 and recall 0.1-0.4. Here X, Y are train + validation rows
        (``in_valid`` marks validation): each such label is fitted twice on the training rows plus
        half of the validation rows and scored on the other half; Platt scaling and the best-F1
        threshold come from those scores. Only these few binary fits are added. Returns the labels.
        """
        from joblib import Parallel, delayed
        from sklearn.linear_model import LogisticRegression

        if self.clf_ is None or self.calibration_ is None or self.thresholds_ is None:
            raise ModelError("calibrate the topic head (fit, then calibrate) before adding new labels")
        learned = [hasattr(est, "coef_") for est in self.clf_.estimators_]
        new = [k for k in range(len(self.labels)) if not learned[k] and Y[in_valid, k].sum() >= min_valid]
        if not new:
            return []
        half = np.random.default_rng(seed).integers(0, 2, size=len(Y))
        X = X.astype(np.float64)  # liblinear's type: converted once, not once per fit
        weight = np.ones(len(Y)) if sample_weight is None else sample_weight
        jobs = [(k, f) for k in new for f in (0, 1)]

        def fit_score(k: int, f: int) -> np.ndarray:
            fit_rows = ~(in_valid & (half == f))
            svc = self._estimator(seed).fit(X[fit_rows], Y[fit_rows, k], sample_weight=weight[fit_rows])
            return np.asarray(X[in_valid & (half == f)] @ np.ravel(svc.coef_) + float(svc.intercept_[0]))

        scores = Parallel(n_jobs=2)(delayed(fit_score)(k, f) for k, f in jobs)
        default = float(np.median(self.thresholds_))
        for k in new:
            s = np.zeros(int(in_valid.sum()))
            for (kk, f), sc in zip(jobs, scores):
                if kk == k:
                    s[(half[in_valid] == f)] = sc
            y = Y[in_valid, k]
            lr = LogisticRegression(C=1e4).fit(s.reshape(-1, 1), y)
            self.calibration_[k] = [float(lr.coef_[0, 0]), float(lr.intercept_[0])]
            p = _sigmoid(s * self.calibration_[k, 0] + self.calibration_[k, 1])
            self.thresholds_[k] = _best_f1_threshold(y, p, default) if y.sum() >= 5 else default
        return [self.labels[k] for k in new]

    def _proba_from_scores(self, S: np.ndarray) -> np.ndarray:
        if self.calibration_ is None:
            raise ModelError("the model is not fitted (calibration_ is missing): retrain it with train.py")
        P = _sigmoid(S * self.calibration_[:, 0] + self.calibration_[:, 1])
        if not self.multi_label:
            P = P / np.maximum(P.sum(axis=1, keepdims=True), 1e-9)
        return P

    def proba(self, X: sparse.csr_matrix) -> np.ndarray:
        return self._proba_from_scores(self.decision(X))

    def decide(self, P: np.ndarray) -> np.ndarray:
        """Boolean (n, K) decisions: above threshold, and always the most likely label."""
        if self.thresholds_ is None:
            raise ModelError("the model is not fitted (thresholds_ is missing): retrain it with train.py")
        top = P.argmax(axis=1)
        D = (P >= self.thresholds_) if self.multi_label else np.zeros_like(P, dtype=bool)
        D[np.arange(len(P)), top] = True
        return D


_FOLD = str.maketrans("", "", "\u0e47\u0e48\u0e49\u0e4a\u0e4b\u0e4c")


def fold(word: str) -> str:
    """A word without tone marks, mai taikhu and thanthakhat: ช็อต, ช๊อต and ชอต are one word."""
    return word.translate(_FOLD)


_FOLDED: dict[str, str] = {}
"""``fold`` of the words seen (a text's words are mostly common ones: a lookup is a third of ``str.translate``'s time)."""
FOLD_CACHE = 200_000


def fold_all(words: Sequence[str]) -> list[str]:
    """``[fold(w) for w in words]``, each distinct word folded once (up to FOLD_CACHE words are kept)."""
    get = _FOLDED.get
    out = []
    for word in words:
        folded = get(word)
        if folded is None:
            if len(_FOLDED) >= FOLD_CACHE:
                _FOLDED.clear()
            folded = _FOLDED[word] = word.translate(_FOLD)
        out.append(folded)
    return out


@dataclass
class HazardCues:
    """Danger as an object plus a state, found on word tokens (``[hazard]`` of the lexicon).

    ``สายไฟขาดห้อยลงมา`` -> ``[("wire+down", "สายไฟ ขาด"), ...]``; ``ต้นไม้ยังไม่ล้ม`` -> a negated pair,
    which is its own feature; ``ซ่อมแล้ว`` -> ``resolved``. The urgency model learns every weight.
    """

    objects: dict[str, list[str]]
    states: dict[str, list[str]]
    negators: list[str]
    resolved: list[str]
    after: int = 6
    before: int = 3

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HazardCues:
        return cls({k: list(v) for k, v in raw["objects"].items()}, {k: list(v) for k, v in raw["states"].items()},
                   list(raw.get("negators", [])), list(raw.get("resolved", [])), int(raw.get("after", 6)),
                   int(raw.get("before", 3)))

    @cached_property
    def names(self) -> list[str]:
        """Feature names: every object+state pair, any pair, a negated pair, already fixed."""
        return [f"{o}+{st}" for o in self.objects for st in self.states] + ["hazard_any", "hazard_negated", "resolved"]

    @cached_property
    def _terms(self) -> dict[str, list[tuple[str, str]]]:
        terms: dict[str, list[tuple[str, str]]] = {}
        for kind, table in (("object", self.objects), ("state", self.states)):
            for name, words in table.items():
                for w in words:
                    terms.setdefault(fold(w), []).append((kind, name))
        for w in self.negators:
            terms.setdefault(fold(w), []).append(("negator", ""))
        for w in self.resolved:
            terms.setdefault(fold(w), []).append(("resolved", ""))
        return terms

    @cached_property
    def _prefixes(self) -> tuple[frozenset[str], tuple[int, ...]]:
        """Every prefix of every term, and the terms' lengths in increasing order (``_spans``' shortcuts)."""
        return (frozenset(t[:k] for t in self._terms for k in range(1, len(t) + 1)),
                tuple(sorted({len(t) for t in self._terms})))

    @cached_property
    def _word_memo(self) -> dict[str, tuple[list[tuple[str, str]] | None, list[tuple[str, str]]]]:
        """``_word_spans`` of the folded words seen (a text's words are mostly common ones); never pickled."""
        return {}

    def __getstate__(self) -> dict[str, Any]:
        """What is pickled with a model: the instance's attributes as before, without ``_word_memo`` (the words of
        every text seen, e.g. all training texts, which would grow the saved model)."""
        state = dict(self.__dict__)
        state.pop("_word_memo", None)
        return state

    def _word_spans(self, word: str) -> tuple[list[tuple[str, str]] | None, list[tuple[str, str]]]:
        """What one folded word gives ``_spans`` on its own: the (kind, name) of the terms it is (None when no
        term starts with it, so no join with the next words can be one either), and, for a word that is
        not a term, the terms of the two terms glued into it (ล้มทับ = ล้ม + ทับ: the first split whose
        first part, of a term's length, and the rest are both terms)."""
        terms = self._terms
        prefixes, lengths = self._prefixes
        own = terms.get(word, []) if word in prefixes else None
        glued: list[tuple[str, str]] = []
        if word not in terms:
            for k in lengths:
                if k >= len(word) - 1:
                    break
                if k >= 2 and word[:k] in terms and word[k:] in terms:
                    glued = terms[word[:k]] + terms[word[k:]]
                    break
        return own, glued

    def _spans(self, tokens: list[str]) -> list[tuple[int, int, str, str, str]]:
        """(start, end, kind, name, surface) for every term written as 1-3 consecutive tokens, or as
        two terms glued into one token (ล้มทับ = ล้ม + ทับ).

        Shortcuts that change nothing found: tokens joined further only while they are the start of
        some term, and a glued word split only where its first part could be a term (its length)."""
        folded = fold_all(tokens)
        terms = self._terms
        prefixes = self._prefixes[0]
        memo = self._word_memo
        if len(memo) >= FOLD_CACHE:
            memo.clear()
        out = []
        n = len(folded)
        for i in range(n):
            word = folded[i]
            found = memo.get(word)
            if found is None:
                found = memo[word] = self._word_spans(word)
            own, glued = found
            if own is not None:  # a term starts with this word: the terms it is, then those of longer joins
                for kind, name in own:
                    out.append((i, i + 1, kind, name, tokens[i]))
                joined = word
                for j in (2, 3):
                    if i + j > n:
                        break
                    joined += folded[i + j - 1]
                    if joined not in prefixes:  # no term starts so: none is this or a longer join
                        break
                    for kind, name in terms.get(joined, []):
                        out.append((i, i + j, kind, name, "".join(tokens[i : i + j])))
            for kind, name in glued:
                out.append((i, i + 1, kind, name, tokens[i]))
        return out

    def find(self, tokens: list[str]) -> list[tuple[str, str]]:
        """(feature, phrase) pairs found in a tokenised text."""
        spans = self._spans(tokens)
        objects = [s for s in spans if s[2] == "object"]
        states = [s for s in spans if s[2] == "state"]
        negator_ends = {s[1] for s in spans if s[2] == "negator"}
        found: list[tuple[str, str]] = []
        for a, b, _k, obj, osurf in objects:
            for c, d, _k2, state, ssurf in states:
                if (c, d) == (a, b) and osurf == ssurf and obj == state:
                    continue
                near = (b <= c and c - b <= self.after) or (d <= a and a - d <= self.before)
                if not near or (c < b and d > a and not (c == a and d == b)):
                    continue
                phrase = f"{osurf} {ssurf}" if c >= a else f"{ssurf} {osurf}"
                if c in negator_ends:
                    found.append(("hazard_negated", phrase))
                else:
                    found.append((f"{obj}+{state}", phrase))
        if any(f != "hazard_negated" for f, _ in found):
            found.append(("hazard_any", next(ph for f, ph in found if f != "hazard_negated")))
        found += [("resolved", s[4]) for s in spans if s[2] == "resolved"]
        seen: set[str] = set()
        return [(f, ph) for f, ph in found if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]


@dataclass
class Lexicon:
    """Urgency cues read from a TOML file: regex groups and object+state hazards (``[hazard]``)."""

    groups: dict[str, list[str]]
    kinds: dict[str, str]
    hazard: HazardCues | None = None

    @classmethod
    def load(cls, path: Path = LEXICON_PATH) -> Lexicon:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        groups = raw.get("groups", {})
        hazard = HazardCues.from_dict(raw["hazard"]) if "hazard" in raw else None
        return cls({g: list(v["patterns"]) for g, v in groups.items()}, {g: v["kind"] for g, v in groups.items()},
                   hazard)

    @cached_property
    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile("|".join(f"(?:{p})" for p in pats)) for pats in self.groups.values()]

    @cached_property
    def _searchers(self) -> list[FirstOf]:
        """``compiled``'s searches (the match's span and text), each skipping the texts that lack the words its
        matches need, alternative by alternative (``triage.prefilter``)."""
        return [FirstOf(list(pats), scan=NORMALISED) for pats in self.groups.values()]

    @cached_property
    def _column_of(self) -> dict[str, int]:
        """Each feature's column (``names``), made once (``features`` built it on every call)."""
        return {name: j for j, name in enumerate(self.names)}

    @property
    def names(self) -> list[str]:
        """Feature columns: the regex groups, then the hazard features."""
        return list(self.groups) + (self.hazard.names if self.hazard else [])

    def kind(self, name: str) -> str:
        """"high" for a danger cue (a regex group of kind high, an object+state pair), else its kind."""
        if name in self.kinds:
            return self.kinds[name]
        return "high" if "+" in name else "info"

    def __getstate__(self) -> dict[str, Any]:
        return {"groups": self.groups, "kinds": self.kinds, "hazard": self.hazard}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.groups, self.kinds = state["groups"], state["kinds"]
        self.hazard = state.get("hazard")

    def matches(self, text: str) -> list[tuple[str, str]]:
        """(cue, matched phrase) pairs found in a normalised text."""
        found = []
        for name, pattern in zip(self.groups, self._searchers):
            m = pattern.search(text)
            if m:
                found.append((name, m.group(0)))
        if self.hazard is not None:
            found += self.hazard.find(tokenize(text))
        return found

    def features(self, texts: list[str], found: list[list[tuple[str, str]]] | None = None) -> np.ndarray:
        """(n, cues) 0/1: which cues occur in each text (from ``matches`` when given)."""
        found = found if found is not None else [self.matches(t) for t in texts]
        column = self._column_of
        out = np.zeros((len(texts), len(column)), dtype=np.float32)
        for i, pairs in enumerate(found):
            for name, _phrase in pairs:
                if name in column:
                    out[i, column[name]] = 1.0
        return out


@dataclass
class UrgencyHead:
    """Urgency from hazard cues, topic probabilities and words; ``high`` by a recall-minded threshold."""

    levels: list[str]
    lexicon: Lexicon
    C: float = 0.5
    cue_bonus: float = HIGH_CUE_BONUS
    high_share: float | None = HIGH_SHARE  # None: the cost rule (HIGH_MISS_COST) chooses the high threshold
    clf_: LogisticRegression | None = None
    high_threshold_: float = 0.5
    low_bias_: float = 0.0  # below high: "low" when log P(low) - log P(medium) exceeds it (chosen out of fold)
    cv_: dict[str, Any] = field(default_factory=dict)

    word_cols_: np.ndarray | None = None  # word columns kept: those seen in the labelled tickets
    char_vec_: TfidfVectorizer | None = None  # character 2-4-grams of the labelled tickets (fit_chars)

    def fit_chars(self, norm_texts: list[str]) -> None:
        """Character 2-4-grams (inside word boundaries) of the urgency-labelled training texts.

        The urgent complaints the lexicon misses are ordinary hazards in words it does not list
        (issue 12); character n-grams read parts of words and spellings the word tokens split
        differently (ไฟช็อต, ท่อแตก, ...). Label-free; fitted on the rows the head trains on. An
        n-gram in fewer than 5 of them is left out: the same AUC of high by cross-validation (0.924)
        with 46k instead of 110k columns, and L-BFGS's time grows with the columns.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=5 if len(norm_texts) >= 500 else 1,
                              sublinear_tf=True, dtype=np.float32)
        try:
            self.char_vec_ = vec.fit(norm_texts)
        except ValueError:  # no text with a character n-gram: the head goes without the block
            self.char_vec_ = None

    def select_words(self, X_words: sparse.csr_matrix, min_df: int = 1) -> None:
        """Keep only words that occur in the (few) urgency-labelled tickets: a column that is zero
        in every training row keeps a zero weight anyway, so dropping it changes nothing but the
        time (1,050 tickets use a few thousand of the 220k words). Label-free."""
        df = np.asarray((X_words > 0).sum(axis=0)).ravel()
        self.word_cols_ = np.flatnonzero(df >= min_df)

    def design(self, norm_texts: list[str], topic_P: np.ndarray, X_words: sparse.csr_matrix,
               found: list[list[tuple[str, str]]] | None = None) -> sparse.csr_matrix:
        if self.word_cols_ is not None:
            X_words = fastpath.column_picker(self, self.word_cols_, X_words.shape[1])(X_words.tocsr())
        lex = self.lexicon.features(norm_texts, found)
        length = np.array([[min(len(t), 1000) / 1000, len(t) < 20] for t in norm_texts], dtype=np.float32)
        dense = np.hstack([lex * 2.0, topic_P.astype(np.float32), length])
        blocks: list[tuple[sparse.csr_matrix, Any]] = [(X_words.tocsr(), 0.5)]
        char_vec = getattr(self, "char_vec_", None)  # None in heads saved before the character block
        if char_vec is not None:
            blocks.append((fastpath.tfidf_transform(char_vec, norm_texts), np.float32(URGENCY_CHAR_WEIGHT)))
        # [dense | words * 0.5 | characters * URGENCY_CHAR_WEIGHT] in one pass (scipy's hstack's entries)
        return fastpath.hstack_blocks(dense, blocks)

    def high_cue(self, Z: sparse.csr_matrix) -> np.ndarray:
        """1 where a danger (``kind = "high"``) cue of the lexicon matched: the first columns of Z."""
        def picker() -> fastpath.ColumnPicker | None:
            cols = [j for j, g in enumerate(self.lexicon.names) if self.lexicon.kind(g) == "high"]
            return fastpath.ColumnPicker(np.array(cols), Z.shape[1]) if cols else None

        pick = fastpath.cached(self, self.lexicon, picker, f"high{Z.shape[1]}")
        if pick is None:
            return np.zeros(Z.shape[0])
        if Z.shape[0] == 1:  # one row: whether a picked column holds a value above 0 (no dense copy)
            end = int(Z.indptr[1])
            return np.array([float((Z.data[:end][pick.map[Z.indices[:end]] >= 0] > 0).any())])
        return (pick(Z.tocsr()).toarray().max(axis=1) > 0).astype(float)

    def high_score(self, P: np.ndarray, cue: np.ndarray) -> np.ndarray:
        """P(high) plus a fixed bonus when a rubric danger cue is present: the rubric says such a
        complaint is high when the danger is plausible, and 84 labelled highs are too few for the
        learner to trust the cues that much on its own."""
        return P[:, self.levels.index("high")] + getattr(self, "cue_bonus", HIGH_CUE_BONUS) * cue

    def _fit_clf(self, Z: sparse.csr_matrix, y: np.ndarray) -> LogisticRegression:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(Z, y)

    def _choose_threshold(self, y_high: np.ndarray, p_high: np.ndarray, share_rows: np.ndarray | None = None) -> float:
        """The high threshold from out-of-fold scores.

        With ``high_share`` (the default, ``HIGH_SHARE``): the score above which that share of the
        rows falls, i.e. the most recall the flagged-share budget allows, whatever the precision.
        ``share_rows`` (a mask) counts the share on those rows only: rows drawn *because* they
        matched a danger cue (the ``cue`` stratum of ``labels/``, ``triage.training.SHARE_LEFT_OUT``)
        are richer in high than any month, and counting them would raise the threshold for every
        later ticket (``python bench/urgency_threshold.py``, fitted before 2022-11: flagging 18% of
        all rows flagged 13.0% of 2022-11's random stratum, reweighted; counted outside them, 16.0%).
        Without (None): the threshold with the lowest cost, HIGH_MISS_COST per missed high and 1
        per false alarm (the rule before issue 12's third round: it flagged 21% by cross-validation,
        over the 20% budget, and the share it flags moves with the mix of the training rows).
        """
        share = getattr(self, "high_share", None)  # None in heads saved before the rule existed
        if share is not None and len(p_high):
            counted = p_high if share_rows is None or not np.any(share_rows) else p_high[np.asarray(share_rows, bool)]
            return float(np.quantile(counted, 1.0 - float(share), method="higher"))
        grid = np.unique(np.concatenate([p_high, [1.0]]))
        best, best_cost = 0.5, np.inf
        for t in grid:
            pred = p_high >= t
            cost = HIGH_MISS_COST * float((~pred & (y_high == 1)).sum()) + float((pred & (y_high == 0)).sum())
            if cost < best_cost:
                best, best_cost = float(t), cost
        return best

    def fit(self, Z: sparse.csr_matrix, y: np.ndarray, seed: int = 0, n_jobs: int = 1,
            share_rows: np.ndarray | None = None) -> UrgencyHead:
        """Fit on all rows; the high threshold comes from out-of-fold probabilities.

        The out-of-fold fits and the fit on all rows run together in ``n_jobs`` processes.
        ``share_rows``: the rows the flagged share is counted on (``_choose_threshold``; None: all).
        """
        from joblib import Parallel, delayed

        clfs = Parallel(n_jobs=n_jobs)(delayed(fit_rows)(self, Z, y, rows) for rows in self.fit_tasks(y, seed))
        return self.fit_with(Z, y, clfs, seed, share_rows)

    def _splits(self, y: np.ndarray, seed: int, folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import StratifiedKFold

        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))

    def fit_tasks(self, y: np.ndarray, seed: int = 0) -> list[np.ndarray | None]:
        """The rows of each logistic fit that ``fit`` needs: the out-of-fold fits, then all rows (None).

        With ``fit_with`` the fits can be run anywhere, e.g. in one pool with other heads' fits
        (``triage.training.evaluate_urgency``): the same numbers as ``fit``.
        """
        return [tr for tr, _te in self._splits(y, seed)] + [None]

    def fit_with(self, Z: sparse.csr_matrix, y: np.ndarray, clfs: list[LogisticRegression], seed: int = 0,
                 share_rows: np.ndarray | None = None) -> UrgencyHead:
        """``fit`` from the classifiers fitted on the rows of ``fit_tasks(y, seed)``, in that order."""
        splits = self._splits(y, seed)
        if len(clfs) != len(splits) + 1:
            raise ModelError(f"fit_with needs {len(splits) + 1} fitted classifiers, got {len(clfs)}")
        oof = np.zeros((len(y), len(self.levels)))
        for (_tr, te), clf in zip(splits, clfs):
            oof[te] = self._align(clf, clf.predict_proba(Z[te]))
        score = self.high_score(oof, self.high_cue(Z))
        self.high_threshold_ = self._choose_threshold((y == "high").astype(int), score, share_rows)
        # the medium/low boundary on the same rows: the cue stratum has few lows (11 of 350)
        mix = slice(None) if share_rows is None or not np.any(share_rows) else np.asarray(share_rows, bool)
        self.low_bias_ = self._choose_low_bias(y[mix], oof[mix], (score >= self.high_threshold_)[mix])
        self.clf_ = clfs[-1]
        return self

    def _low_margin(self, P: np.ndarray) -> np.ndarray | None:
        """log P(low) - log P(medium) per row; None when the levels are not high/medium/low."""
        if "low" not in self.levels or "medium" not in self.levels:
            return None
        return np.log(P[:, self.levels.index("low")] + 1e-12) - np.log(P[:, self.levels.index("medium")] + 1e-12)

    def _choose_low_bias(self, y: np.ndarray, P: np.ndarray, high: np.ndarray) -> float:
        """The medium/low boundary with the best macro-F1 on out-of-fold probabilities.

        The class-balanced fit makes "low" (about a fifth of tickets) as likely a priori as
        "medium" (seven tenths), so the likelier of the two calls many medium tickets low (107 of
        375 on the 2022-12 test). The boundary is moved on the training rows' out-of-fold
        predictions, ``high`` decisions fixed; 0 is the plain argmax.
        """
        from sklearn.metrics import f1_score

        margin = self._low_margin(P)
        if margin is None:
            return 0.0
        best, best_f1 = 0.0, -1.0
        for b in np.round(np.linspace(-3.0, 3.0, 61), 2):
            pred = np.where(high, "high", np.where(margin > b, "low", "medium"))
            f1 = float(f1_score(y, pred, labels=list(self.levels), average="macro", zero_division=0))
            if f1 > best_f1 + 1e-9:
                best, best_f1 = float(b), f1
        return best

    def out_of_fold(self, Z: sparse.csr_matrix, y: np.ndarray, seed: int = 0, folds: int = 5,
                    n_jobs: int = 1) -> np.ndarray:
        from joblib import Parallel, delayed

        P = np.zeros((len(y), len(self.levels)))
        splits = self._splits(y, seed, folds)
        clfs = Parallel(n_jobs=n_jobs)(delayed(self._fit_clf)(Z[tr], y[tr]) for tr, _te in splits)
        for (_tr, te), clf in zip(splits, clfs):
            P[te] = self._align(clf, clf.predict_proba(Z[te]))
        return P

    def _align(self, clf: LogisticRegression, P: np.ndarray) -> np.ndarray:
        out = np.zeros((len(P), len(self.levels)))
        for j, c in enumerate(clf.classes_):
            out[:, self.levels.index(c)] = P[:, j]
        return out

    def proba(self, Z: sparse.csr_matrix) -> np.ndarray:
        if self.clf_ is None:
            raise ModelError("the model is not fitted (clf_ is missing): retrain it with train.py")
        return self._align(self.clf_, fastpath.linear_proba(self.clf_, Z))

    def decide(self, P: np.ndarray, Z: sparse.csr_matrix) -> list[str]:
        """``high`` when the cue-boosted high score reaches the cost-chosen threshold, else the likelier level."""
        score = self.high_score(P, self.high_cue(Z))
        hi = self.levels.index("high")
        margin = self._low_margin(P)
        if margin is not None:  # below high: low when its margin over medium passes the chosen bias
            bias = getattr(self, "low_bias_", 0.0)  # models saved before the bias existed: argmax
            below = np.where(margin > bias, "low", "medium")
            return [self.levels[hi] if sc >= self.high_threshold_ else str(b) for sc, b in zip(score, below)]
        rest = P.copy()
        rest[:, hi] = -1
        return [self.levels[hi] if sc >= self.high_threshold_ else self.levels[int(np.argmax(r))]
                for sc, r in zip(score, rest)]


def fit_rows(head: UrgencyHead, Z: sparse.csr_matrix, y: np.ndarray, rows: np.ndarray | None) -> LogisticRegression:
    """``head``'s logistic regression fitted on ``rows`` of (Z, y) (None: all): a joblib task."""
    return head._fit_clf(Z, y) if rows is None else head._fit_clf(Z[rows], y[rows])


@dataclass
class TriageModel:
    """Everything needed to triage a complaint: featurizer and heads, with their label sets."""

    version: str
    featurizer: FeatureUnion
    topic: TopicHead
    urgency: UrgencyHead | None = None
    agency: Any = None  # set by triage.routing when the dataset has agency data
    explain_top: int = 5

    @property
    def topic_labels(self) -> list[str]:
        return list(self.topic.labels)

    @property
    def urgency_levels(self) -> list[str]:
        return list(self.urgency.levels) if self.urgency else []

    def featurize(self, norm_texts: list[str], analyzed: dict[str, list[str]] | None = None) -> sparse.csr_matrix:
        """TF-IDF features of normalised texts (``analyzed``: precomputed words, see ``analyze_words``)."""
        with precomputed_words(self.featurizer, analyzed):
            return self.featurizer.transform(norm_texts).tocsr()

    @cached_property
    def _word_offset(self) -> int:
        """Column where the word features start (after the character block, if any)."""
        offset = 0
        for name, vec in self.featurizer.transformer_list:
            if name == "word":
                return offset
            offset += len(vec.vocabulary_)
        return -1

    def word_block(self, X: sparse.csr_matrix) -> sparse.csr_matrix:
        """The word-feature columns of X (empty when the featurizer has none)."""
        if self._word_offset < 0:
            return sparse.csr_matrix((X.shape[0], 0), dtype=X.dtype)
        if self._word_offset == 0:  # words only (the default featurizer): X itself
            return X
        return X[:, self._word_offset :]

    def predict(self, texts: list[str], districts: list[str | None] | None = None,
                norm: list[str] | None = None, analyses: fastpath.Analyses | None = None) -> list[Prediction]:
        """Triage raw complaint texts: topics, urgency, their scores and an explanation each.

        ``norm`` is the texts already normalised (``normalize_many``), when the caller has them;
        ``districts`` are for the routing step, which is not the model's (``triage.prediction``).
        ``analyses`` keeps each text's word analysis for the agency model (``fastpath.Analyses``).
        Features by the fast path (``triage.fastpath``: scikit-learn's numbers without its per-call checks).
        """
        norm = normalize_many(texts) if norm is None else norm
        X = fastpath.transform(self.featurizer, norm, analyses or fastpath.Analyses()).tocsr()
        P = self.topic.proba(X)
        D = self.topic.decide(P)
        out: list[Prediction] = []
        U = None
        if self.urgency is not None:
            found = [self.urgency.lexicon.matches(t) for t in norm]
            Z = self.urgency.design(norm, P, self.word_block(X), found)
            U = self.urgency.proba(Z)
            levels = self.urgency.decide(U, Z)
        labels = self.topic.labels
        orders = np.argsort(-P, axis=1).tolist()  # rows of Python numbers: no numpy scalar per label
        P_rows, D_rows = P.tolist(), D.tolist()
        U_rows = U.tolist() if U is not None else None
        explanations = self.explain_rows(X, [order[0] for order in orders]) if len(texts) > 1 else None
        for i in range(len(texts)):
            order, p, d = orders[i], P_rows[i], D_rows[i]
            rec: Prediction = {
                "topics": [labels[k] for k in order if d[k]],
                "topic_scores": {labels[k]: round(p[k], 4) for k in order},
                "explanation": explanations[i] if explanations is not None else self.explain(X, i, order[0]),
            }
            if U_rows is not None and self.urgency is not None:
                rec["urgency"] = levels[i]
                rec["urgency_scores"] = {lv: round(U_rows[i][j], 4) for j, lv in enumerate(self.urgency.levels)}
                rec["urgency_cues"] = [phrase for _, phrase in found[i]][:5]
            out.append(rec)
        return out

    @cached_property
    def _word_names(self) -> np.ndarray:
        """The word features' names by column: ``get_feature_names_out()``, read off the vocabulary (whose
        columns are 0..n-1) without sorting it."""
        vec = dict(self.featurizer.transformer_list).get("word")
        if vec is None:
            return np.array([])
        vocab: dict[str, int] = vec.vocabulary_
        names = np.empty(len(vocab), dtype=object)
        names[np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))] = list(vocab)
        return names

    def explain_rows(self, X: sparse.csr_matrix, tops: list[int]) -> list[list[Token]]:
        """``[explain(X, i, tops[i]) for i in rows]``, the same lists: each label's contributions for all the rows
        it explains in one product (the same elementwise products in the same types), then per row the same
        ``argsort`` of the same contributions (so ties come out in the same order)."""
        if self.topic.clf_ is None:
            raise ModelError("the model is not fitted (topic.clf_ is missing): retrain it with train.py")
        out: list[list[Token]] = [[] for _ in tops]
        if self._word_offset < 0 or not tops:
            return out
        ests = self.topic.clf_.estimators_
        indptr = np.asarray(X.indptr, dtype=np.int64)
        by_label: dict[int, list[int]] = {}
        for i, k in enumerate(tops):
            by_label.setdefault(k, []).append(i)
        offset, names, top_n = self._word_offset, self._word_names, self.explain_top
        for k, rows in by_label.items():
            est = ests[k] if len(ests) > k else None
            if est is None or not fastpath.has_fitted(est, "coef_"):
                continue
            row_arr = np.asarray(rows, dtype=np.int64)
            starts, lengths = indptr[row_arr], indptr[row_arr + 1] - indptr[row_arr]
            # every entry of these rows, row after row: position = row start + place in the row
            first = np.repeat(np.cumsum(lengths) - lengths, lengths)
            at = np.repeat(starts, lengths) + (np.arange(int(lengths.sum())) - first)
            idx, vals = X.indices[at], X.data[at]
            words = idx >= offset
            contrib = vals[words] * np.ravel(est.coef_)[idx[words]]
            idx = idx[words]
            keep = contrib > 0
            idx, contrib = idx[keep], contrib[keep]
            # where each row's part of what is left ends: the entries kept up to the row's last one
            kept = np.zeros(len(at), dtype=np.int64)
            kept[np.flatnonzero(words)[keep]] = 1
            ends = np.concatenate([[0], np.cumsum(kept)])[np.cumsum(lengths)].tolist()
            lo = 0
            for i, hi in zip(rows, ends):
                if hi > lo:
                    c = contrib[lo:hi]
                    top = np.argsort(-c)[:top_n]
                    row_idx = idx[lo:hi]
                    out[i] = [{"token": str(names[row_idx[j] - offset]), "weight": round(float(c[j]), 4)} for j in top]
                lo = hi
        return out

    def explain(self, X: sparse.csr_matrix, i: int, k: int) -> list[Token]:
        """The words (and word pairs) of row ``i`` of X that pushed label k most, with their contribution.

        Works on the CSR arrays directly: slicing a sparse row per complaint cost half the
        prediction time.
        """
        if self.topic.clf_ is None:
            raise ModelError("the model is not fitted (topic.clf_ is missing): retrain it with train.py")
        est = self.topic.clf_.estimators_[k] if len(self.topic.clf_.estimators_) > k else None
        if est is None or not fastpath.has_fitted(est, "coef_") or self._word_offset < 0:
            return []
        lo, hi = X.indptr[i], X.indptr[i + 1]
        idx, vals = X.indices[lo:hi], X.data[lo:hi]
        words = idx >= self._word_offset
        idx = idx[words]
        contrib = vals[words] * np.ravel(est.coef_)[idx]
        keep = contrib > 0
        idx, contrib = idx[keep], contrib[keep]
        top = np.argsort(-contrib)[: self.explain_top]
        names = self._word_names
        return [{"token": str(names[idx[j] - self._word_offset]), "weight": round(float(contrib[j]), 4)} for j in top]
