"""The learned agency model: which kind of agency owns a complaint, and when to move it (issue 14).

Training rows: tickets that the first handler had to forward (``routing/traffy-forwards.csv``,
labelled with the kind of the agency they were forwarded to), a large sample of ordinary
finished tickets with no forward note (labelled ``district_office``: handled where they were
filed), weighted so that forwards are ``forward_rate`` of the rows, the real share; and
reviewers' agency corrections. Intake boilerplate (the 1555 form, hashtags, relay headers) is
stripped before features (``strip_intake``): it tells which channel a complaint came through, not
who must handle it. The model is a stock scikit-learn pipeline (strip, word TF-IDF, multinomial
logistic regression) predicting a KIND, which the router resolves to a concrete agency.

The decision: on validation forwards and ordinary tickets mixed at the real rate, a small logistic
calibration maps (model probability of a kind, a strong / weak table rule naming it) to the
probability that the kind is right. The router moves the primary agency only at or above
``move_threshold`` = 0.5 at the lowest real forward rate (``decision_rate`` 2%, so 0.72 on the 5%
calibration): a wrong move costs as many days as a missed forward, so moving pays
exactly when it is more likely right than wrong (and then no other agency is likelier).

Reviewers' corrections act without a retrain through ``CorrectionMemory``
(``AgencyModel.learn_corrections``, applied by ``triage.serving.ModelHolder`` at every (re)load with
the corrections in the case store): the most similar corrected complaints vote for their kind.

Evaluation (issue 14 §6), time-ordered: the latest forwards and the latest ordinary tickets, the
mixes at 2/5/8% forward rates, the 2023-05 file of really assigned organisations (a later test,
never used for fitting or choosing), and a replay of reviewers' corrections in time order.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from triage.errors import DataError
from triage.lightload import LazyModule
from triage.routing import DISTRICT_OFFICE, Router
from triage.text import normalize_many, word_analyzer

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from triage.data import DatasetConfig
else:  # a saved model names this module: unpickling it for prediction needs neither (triage.lightload)
    pd = LazyModule("pandas")

FORWARD_COLUMNS = ["timestamp", "comment", "district", "forwarded_to"]
MIX_RATES = (0.02, 0.05, 0.08)

# Intake boilerplate, on normalised text. Measured on the shared data: the relay template opens 38
# of 728 forwards and no 2022 ticket, "#1555" ends 173 forwards and 0.25% of tickets, the form's
# field labels (ปัญหา :, จุดเกิดเหตุ :, เขต : ...) fill 10-15% of forwards and 0.1% of tickets.
_INTAKE = re.compile("|".join(f"(?:{p})" for p in [
    r"[‘'\"/*]*\s*กรุณาอ่านข้อมูลบรรยายประกอบ(?:กับ)?การปักหมุด\s*[’'\"]*",
    r"\(?\s*สถานที่สำคัญ\s*/\s*จุดสังเกตุ?\s*\)?",
    r"ศูนย์เรื่องราวร้องทุกข์\s*ได้รับการประสานผ่านระบบการจัดการเรื่องราวร้องทุกข์\s*สำนักงานปลัดสำนักนายกรัฐมนตรี(?:\s*ทำเนียบรัฐบาล)?",
    r"รหัสเรื่อง\s*\S+",
    r"คำร้องจาก\s*line\s*psc\s*1111-*",
    r"ขอขอบคุณ\s*เจ้าหน้าที่ทุกท่าน(?:\s*ในการจัดการปัญหานี้)?",
    r"(?:เลขรับแจ้ง|เลขร้องทุกข์อ้างอิง|เลขแจ้งอ้างอิง)(?:ก่อนหน้า)?\s*:\s*\S*",
    r"#\S*",
    r"(?<![ก-๙])(?:ปัญหาที่แจ้ง|ปัญหา|จุดเกิดเหตุ|พิกัดจุดสังเกตุ?|พิกัดจุดเกิดเหตุ|จุดสังเกตุ?|บ้านเลขที่|ซอย|ถนน|เขต|เเขวง|แขวง)\s*:\s*-?",
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u20E3*]+",
]))
_SPACES = re.compile(r"\s+")
_INTAKE_NEEDS = ("กรุณาอ่านข้อมูลบรรยายประกอบ", "สถานที่สำคัญ", "ศูนย์เรื่องราวร้องทุกข์", "รหัสเรื่อง", "คำร้องจาก", "ขอขอบคุณ",
                 ":", "#", "*")
_INTAKE_SYMBOLS = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u20E3]")
"""Every match of ``_INTAKE`` holds one of ``_INTAKE_NEEDS`` (its alternatives in order: the six phrases, the ``:``
after a reference number or a field label, ``#``) or one character of its last alternative's class (``*`` or
one of ``_INTAKE_SYMBOLS``): a complaint with none of them (about 93% of tickets) has no boilerplate to remove."""


def _may_have_intake(norm: str) -> bool:
    for s in _INTAKE_NEEDS:
        if s in norm:
            return True
    return _INTAKE_SYMBOLS.search(norm) is not None


def strip_intake(norm: str) -> str:
    """Remove intake boilerplate from a normalised complaint: what the channel adds, not what the citizen says.

    ``‘กรุณาอ่านข้อมูลบรรยายประกอบการปักหมุด’ * ปัญหา: ไฟดับ * เขต: บางนา #1555`` -> ``ไฟดับ บางนา``.
    Idempotent.
    """
    return _SPACES.sub(" ", _INTAKE.sub(" ", norm) if _may_have_intake(norm) else norm).strip()


def strip_intake_many(norms: Any) -> list[str]:
    """``strip_intake`` over a list (module-level so that the pipeline pickles)."""
    return [strip_intake(n) for n in norms]


@dataclass
class AgencySettings:
    """The ``[agency]`` section of a dataset config."""

    forwards: str
    assigned: str | None = None  # a later month with the organisations really assigned (a real mix of 2023 tickets)
    # The earliest ``assigned_fit`` share of it (by time) is fitted on: its first half as training rows
    # (the kind really assigned, the district office when only that), its second half in the
    # calibration. The rest is a frozen later test that no choice looks at. 0: a test only.
    assigned_fit: float = 0.0
    assigned_weight: float = 1.0  # weight of one assigned ticket as a training row (a forward weighs 1)
    # what the calibration is fitted on: "forwards" (validation forwards + ordinary tickets at
    # forward_rate), "assigned" (the assigned month's calibration part, the real mix), "both" (each half the weight)
    calibrate_on: str = "forwards"
    replay: bool = True  # the replay of reviewers' corrections (item 4's learning curve) in the report
    holdout: float = 0.3  # the latest share of forwards held out for evaluation
    valid: float = 0.2  # the share before it on which the calibration is fitted
    forward_rate: float = 0.05  # the real share of forwards among tickets (2-8% by period): the prior
    move_threshold: float = 0.5  # break-even: move only when the other kind is more likely right than wrong
    # ... at this forward rate: the lowest of the real 2-8%, so that no period is worse off than "always the
    # district office" (the calibrated probability at ``forward_rate`` is converted, ``decision_threshold``)
    decision_rate: float | None = 0.02
    # words that tell 2023 tickets from 2022 tickets of the same label (assigned month's office-only
    # tickets against ordinary 2022 tickets, training parts only): left out of the model's vocabulary
    # when their share among the 2023 tickets is at least ``source_ratio`` times that among 2022's. 0: off
    source_ratio: float = 0.0
    source_min: int = 5  # ... and they occur in at least this many of the 2023 tickets
    # sample the ordinary training tickets so that their lengths (boilerplate stripped) follow the
    # training forwards' (2022 tickets are short, 2023 forwards long: otherwise length means "forward")
    length_match: bool = False
    validation_only: bool = False  # stop after the validation numbers (bench/agency.py --validation-only)
    ordinary_state: str = "เสร็จสิ้น"  # ordinary tickets: finished by the office they were filed at
    ordinary_train: int = 12000  # ordinary tickets sampled as "stays at the district office"
    ordinary_eval: int = 2000
    memory_strength: float = 10.0  # how much the corrections' votes weigh against the model (CorrectionMemory)
    memory_min_sim: float = 0.4  # both chosen on the validation replay (README, Agency routing)
    rank_C: float = 16.0  # the suggestion ranker (forwards only), chosen on validation
    C: float = 4.0
    seed: int = 0
    min_kept: float | None = None  # no longer used (issue 4's tuning); accepted so old configs load

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgencySettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown or "forwards" not in raw:
            raise DataError(f"[agency] needs 'forwards' and knows only {sorted(known)}; got {sorted(raw)}")
        return cls(**raw)


@dataclass
class CorrectionMemory:
    """Reviewers' corrections, applied at once: the most similar corrected complaints vote for their kind.

    ``adjust`` blends a complaint's kind probabilities P with the votes v of corrections at least
    ``min_sim`` similar (cosine of the agency model's TF-IDF, at most ``k``):
    ``(P + strength * v) / (1 + strength * sum(v))``. A few dozen corrections of one kind of
    complaint (illegal parking to the police) move similar complaints without a retrain.
    """

    kinds: list[str]
    strength: float = 10.0
    min_sim: float = 0.4
    k: int = 10
    X_: sparse.csr_matrix | None = None
    labels_: list[str] = field(default_factory=list)

    def add(self, X: sparse.csr_matrix, kinds: list[str]) -> None:
        """Remember corrected complaints (rows of the model's TF-IDF) with the kind reviewers gave them."""
        keep = [i for i, k in enumerate(kinds) if k in self.kinds]
        if not keep:
            return
        rows = X[keep]
        self.X_ = rows if self.X_ is None else sparse.vstack([self.X_, rows]).tocsr()
        self.labels_ += [kinds[i] for i in keep]

    def __len__(self) -> int:
        return len(self.labels_)

    def adjust(self, X: sparse.csr_matrix, P: np.ndarray) -> np.ndarray:
        if self.X_ is None or not self.labels_:
            return P
        S = (X @ self.X_.T).toarray()
        col = {k: j for j, k in enumerate(self.kinds)}
        label_col = np.array([col[k] for k in self.labels_])
        out = P.copy()
        for i in range(len(P)):
            near = np.flatnonzero(S[i] >= self.min_sim)
            if not len(near):
                continue
            near = near[np.argsort(-S[i, near])][: self.k]
            votes = np.zeros(P.shape[1])
            np.add.at(votes, label_col[near], S[i, near])
            out[i] = (P[i] + self.strength * votes) / (1.0 + self.strength * votes.sum())
        return out


@dataclass
class AgencyModel:
    """Kind-of-agency probabilities for a normalised complaint (``triage.routing.KindModel``)."""

    pipeline: Pipeline
    kinds: list[str]
    trained_on: dict[str, int]
    override_: float | None = None  # issue 4's thresholds (models trained before issue 14 carry these)
    veto_: float | None = None
    bonus_: float | None = None
    calibration_: tuple[float, float, float, float] | None = None  # see triage.routing.Router.move_scores
    move_threshold_: float = 0.5
    forward_rate_: float | None = None
    memory_: CorrectionMemory | None = None
    ranker_: Pipeline | None = None  # kind among forwarded complaints only: ranks the reviewer's suggestions
    memory_strength_: float = 10.0  # CorrectionMemory's settings for learn_corrections at reload
    memory_min_sim_: float = 0.4

    def rank_proba(self, norm: str) -> dict[str, float]:
        """P(kind | the complaint was forwarded), from the forwards alone (empty without a ranker)."""
        ranker = getattr(self, "ranker_", None)
        if ranker is None:
            return {}
        return {str(k): float(v) for k, v in zip(ranker.classes_, ranker.predict_proba([norm])[0])}

    def features(self, norm_texts: list[str]) -> sparse.csr_matrix:
        """The TF-IDF rows the classifier sees (boilerplate stripped)."""
        return self.pipeline[:-1].transform(norm_texts)

    def kind_proba_many(self, norm_texts: list[str]) -> np.ndarray:
        memory = getattr(self, "memory_", None)
        if memory is None or not len(memory):
            return self.pipeline.predict_proba(norm_texts)
        X = self.features(norm_texts)
        return memory.adjust(X, self.pipeline[-1].predict_proba(X))

    def kind_proba(self, norm: str) -> dict[str, float]:
        p = self.kind_proba_many([norm])[0]
        return {k: float(v) for k, v in zip(self.kinds, p)}

    def learn_corrections(self, corrections: pd.DataFrame, router: Router, strength: float = 10.0,
                          min_sim: float = 0.4) -> AgencyModel:
        """A copy of this model that follows reviewers' agency corrections at once (call it at reload).

        ``corrections`` as ``triage.corrections`` exports them (``text``, ``agency``); rows without
        an agency a reviewer set are ignored.
        """
        rows, _unknown = correction_rows(corrections, router)
        model = copy.copy(self)
        model.memory_ = CorrectionMemory(list(self.kinds), strength, min_sim)
        if len(rows):
            model.memory_.add(self.features(rows["norm"].tolist()), rows["kind"].tolist())
        return model


@dataclass
class _Precomputed:
    """An agency model's probabilities computed in one batch, looked up by text (evaluation only)."""

    proba: dict[str, dict[str, float]]
    model: Any = None
    ranks: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, model: AgencyModel, norms: list[str]) -> _Precomputed:
        P = model.kind_proba_many(norms)
        ranks: dict[str, dict[str, float]] = {}
        ranker = getattr(model, "ranker_", None)
        if ranker is not None:
            R = ranker.predict_proba(norms)
            ranks = {n: {str(k): float(v) for k, v in zip(ranker.classes_, row)} for n, row in zip(norms, R)}
        return cls({n: {k: float(v) for k, v in zip(model.kinds, row)} for n, row in zip(norms, P)}, model, ranks)

    def kind_proba(self, norm: str) -> dict[str, float]:
        return self.proba[norm]

    def rank_proba(self, norm: str) -> dict[str, float]:
        return self.ranks.get(norm, {})

    def __getattr__(self, name: str) -> Any:  # calibration_, move_threshold_, ranker_, ... of the model
        if name in ("proba", "model", "ranks") or self.model is None:
            raise AttributeError(name)
        return getattr(self.model, name)


@dataclass(frozen=True)
class WordsWithout:
    """``word_analyzer`` without some words (source traits); a module-level class so that it pickles."""

    drop: frozenset[str] = frozenset()

    def __call__(self, text: str) -> list[str]:
        return [w for w in word_analyzer(text) if w not in self.drop]


def source_words(newer: list[str], older: list[str], ratio: float, min_count: int = 5) -> frozenset[str]:
    """Words (unigrams, bigrams; boilerplate stripped) whose document share among ``newer`` texts is at
    least ``ratio`` times that among ``older`` texts of the same label (add-one on the older count):
    what tells the period or channel, not who must handle a complaint."""
    if ratio <= 0 or not newer or not older:
        return frozenset()
    def df(norms: list[str]) -> Counter[str]:
        c: Counter[str] = Counter()
        for n in norms:
            c.update(set(word_analyzer(strip_intake(n))))
        return c
    new, old = df(newer), df(older)
    return frozenset(w for w, k in new.items()
                     if k >= min_count and (k / len(newer)) >= ratio * (old.get(w, 0) + 1) / len(older))


def fit_agency_model(norm_texts: list[str], kinds: list[str], weights: np.ndarray | None = None,
                     C: float = 4.0, drop_words: frozenset[str] = frozenset()) -> AgencyModel:
    """Fit the kind classifier on normalised texts (at least two kinds); boilerplate is stripped first,
    ``drop_words`` (``source_words``) are left out of the vocabulary."""
    if len(set(kinds)) < 2:
        raise DataError(f"the agency model needs at least two kinds of agency, got {sorted(set(kinds))}")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    analyzer = WordsWithout(drop_words) if drop_words else word_analyzer
    pipe = Pipeline([
        ("intake", FunctionTransformer(strip_intake_many)),
        ("words", TfidfVectorizer(analyzer=analyzer, min_df=2, sublinear_tf=True, dtype=np.float32)),
        ("clf", LogisticRegression(C=C, max_iter=3000)),
    ])
    pipe.fit(norm_texts, kinds, clf__sample_weight=weights)
    return AgencyModel(pipe, [str(k) for k in pipe.classes_], dict(Counter(kinds)))


def fit_ranker(forwards: pd.DataFrame, C: float = 16.0, corrections: pd.DataFrame | None = None,
               assigned: pd.DataFrame | None = None) -> Pipeline | None:
    """The kind among forwarded complaints (forwards, reviewers' corrections and tickets of the
    assigned month assigned to another kind than the district office); None with fewer than two kinds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    rows = _routable(forwards)[["norm", "kind"]]
    for more in (corrections, assigned):
        if more is not None and len(more):
            rows = pd.concat([rows, more[["norm", "kind"]]], ignore_index=True)
    rows = rows[rows["kind"] != DISTRICT_OFFICE]
    if rows["kind"].nunique() < 2:
        return None
    pipe = Pipeline([
        ("intake", FunctionTransformer(strip_intake_many)),
        ("words", TfidfVectorizer(analyzer=word_analyzer, min_df=1, sublinear_tf=True, dtype=np.float32)),
        ("clf", LogisticRegression(C=C, max_iter=3000)),
    ])
    return pipe.fit(rows["norm"].tolist(), rows["kind"].tolist())


def load_forwards(config: DatasetConfig, settings: AgencySettings, router: Router) -> pd.DataFrame:
    """The forwards with their normalised text and the kind of the agency they went to."""
    from triage.data import read_table

    raw = read_table(config.resolve(settings.forwards))
    missing = [c for c in FORWARD_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{settings.forwards} lacks column(s) {missing}; it has: {', '.join(map(str, raw.columns))}")
    fw = raw[raw["comment"].map(lambda t: isinstance(t, str) and t.strip() != "")].copy()
    fw["time"] = fw["timestamp"].astype(str)
    fw["norm"] = normalize_many(fw["comment"].tolist())
    fw["agency"] = [router.directory.canonical(str(a)) for a in fw["forwarded_to"]]
    fw["kind"] = [router.directory.agencies[a].kind if a else None for a in fw["agency"]]
    return fw.sort_values("time", kind="stable").reset_index(drop=True)


def ordinary_ids(config: DatasetConfig, settings: AgencySettings) -> set[str] | None:
    """Ids of tickets finished where they were filed: state ``ordinary_state`` and no forward note.

    None when the dataset has no ``state`` column (then every ticket counts as ordinary).
    """
    from triage.data import read_table

    raw = read_table(config.resolve(config.data))
    if "state" not in raw.columns or not config.id_column:
        return None
    note = raw["note"].fillna("").astype(str) if "note" in raw.columns else pd.Series("", index=raw.index)
    keep = (raw["state"].astype(str) == settings.ordinary_state) & ~note.str.contains("ส่งต่อ")
    return set(raw.loc[keep, config.id_column].astype(str))


def _primary_agency(value: Any) -> str | None:
    """The first agency of a correction's ``agency`` cell (``|``-separated, primary first, as exported)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if not isinstance(value, str):
        return None
    first = value.split("|")[0].strip()
    return first or None


def correction_rows(corrections: pd.DataFrame | None, router: Router) -> tuple[pd.DataFrame, int]:
    """Reviewers' agency corrections as (id, norm, kind) rows; also how many named an unknown agency.

    Rows whose agency a reviewer never set are not agency training data and are left out.
    """
    empty = pd.DataFrame(columns=["id", "norm", "kind"])
    if corrections is None or "agency" not in corrections.columns or "text" not in corrections.columns:
        return empty, 0
    agencies = [_primary_agency(v) for v in corrections["agency"]]
    rows = corrections.assign(_agency=agencies)
    rows = rows[rows["_agency"].notna() & rows["text"].map(lambda t: isinstance(t, str) and t.strip() != "")]
    if rows.empty:
        return empty, 0
    kinds = [router.directory.kind_of(a) for a in rows["_agency"]]
    keep = [k is not None for k in kinds]
    ids = rows["id"].astype(str).tolist() if "id" in rows.columns else [""] * len(rows)
    out = pd.DataFrame({"id": ids, "norm": normalize_many(rows["text"].astype(str).tolist()), "kind": kinds})[keep]
    return out.reset_index(drop=True), int(len(keep) - sum(keep))


def _routable(forwards: pd.DataFrame) -> pd.DataFrame:
    return forwards[forwards["kind"].notna() & (forwards["kind"] != "other")]


def _training_set(forwards: pd.DataFrame, ordinary: pd.DataFrame, corrections: pd.DataFrame,
                  weight: int, rate: float, assigned: pd.DataFrame | None = None,
                  assigned_weight: float = 1.0) -> tuple[list[str], list[str], np.ndarray]:
    """Forwards (weight 1) and ordinary tickets weighted so forwards are ``rate`` of the total weight;
    reviewers' corrections (``weight``); tickets of the assigned month (``assigned_weight``) with the
    kind really assigned (``load_assigned``)."""
    routable = _routable(forwards)
    assigned = assigned if assigned is not None else pd.DataFrame(columns=["norm", "kind"])
    texts = routable["norm"].tolist() + ordinary["norm"].tolist() + corrections["norm"].tolist() + assigned["norm"].tolist()
    kinds = (routable["kind"].tolist() + [DISTRICT_OFFICE] * len(ordinary) + corrections["kind"].tolist()
             + assigned["kind"].tolist())
    w_ord = len(routable) * (1 - rate) / (rate * max(len(ordinary), 1))
    weights = np.concatenate([np.ones(len(routable)), np.full(len(ordinary), w_ord),
                              np.full(len(corrections), float(max(1, weight))), np.full(len(assigned), float(assigned_weight))])
    return texts, kinds, weights


def decision_threshold(rate: float, decision_rate: float | None, break_even: float = 0.5) -> float:
    """The calibrated probability (at forward rate ``rate``) at which a move breaks even at ``decision_rate``.

    A complaint's odds of belonging to another kind scale with the prior odds of a forward, so a
    probability p calibrated at rate r is p' with odds(p') = odds(p) * odds(d) / odds(r) at rate d.
    Moving pays at rate d when p' >= ``break_even``: p >= 1 / (1 + odds(d) / odds(r) * (1 - b) / b).
    At r = 5%, d = 2%: 0.7206. ``decision_rate`` None: ``break_even`` itself.
    """
    if decision_rate is None or decision_rate == rate:
        return break_even
    if not (0 < rate < 1 and 0 < decision_rate < 1 and 0 < break_even < 1):
        raise DataError(f"[agency] forward_rate, decision_rate and move_threshold must be in (0, 1), got {rate}, {decision_rate}, {break_even}")
    k = (decision_rate / (1 - decision_rate)) / (rate / (1 - rate))
    return round(1.0 / (1.0 + k * (1 - break_even) / break_even), 4)


def separation(learned: AgencyModel, fw: pd.DataFrame, ordinary: pd.DataFrame, assigned: pd.DataFrame) -> dict[str, float | None]:
    """How well P(another kind) = 1 - P(district office) tells groups apart (ROC AUC; 0.5 = not at all).

    ``forwards_vs_2023_office``: forwards against 2023 tickets assigned only to the district office
    (content: the higher the better); ``2023_office_vs_2022``: two sets of tickets that both stay at the
    district office, 2023 against 2022 (source: should be 0.5); ``assigned_other_vs_office``: the assigned
    month's tickets with another kind against those without."""
    from sklearn.metrics import roc_auc_score

    col = learned.kinds.index(DISTRICT_OFFICE) if DISTRICT_OFFICE in learned.kinds else None

    def p_other(norms: list[str]) -> list[float]:
        if col is None or not norms:
            return []
        return [float(1.0 - row[col]) for row in learned.kind_proba_many(norms)]

    fw_rows = _routable(fw)
    fw_p = p_other(fw_rows[fw_rows["kind"] != DISTRICT_OFFICE]["norm"].tolist())
    office = [not (k - {DISTRICT_OFFICE}) for k in assigned["truth"]]
    off_p = p_other(assigned[office]["norm"].tolist())
    oth_p = p_other(assigned[[not o for o in office]]["norm"].tolist())
    ord_p = p_other(ordinary["norm"].tolist())

    def auc(pos: list[float], neg: list[float]) -> float | None:
        return round(float(roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg)), 3) if pos and neg else None

    return {"forwards_vs_2023_office": auc(fw_p, off_p), "forwards_vs_2022_ordinary": auc(fw_p, ord_p),
            "2023_office_vs_2022": auc(off_p, ord_p), "assigned_other_vs_office": auc(oth_p, off_p)}


def _share(x: list[bool]) -> float | None:
    return round(float(np.mean(x)), 4) if x else None


def _calibration_rows(router: Router, learned: Any, norms: list[str], districts: list[Any], recs: list[dict[str, Any]],
                      truth: list[Any], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, y, weight) per (complaint, kind other than the district office) for the calibration.

    ``truth``: per complaint its kind, or the set of kinds really assigned (a move to any of them is right)."""
    X, y, w = [], [], []
    for n, d, rec, true, wt in zip(norms, districts, recs, truth, weights):
        d = d if isinstance(d, str) and d else None
        table = router.table_kinds(n, router.rule_topics(rec))
        p = router.usable(learned.kind_proba(n), d)
        evidence = router.rule_evidence(table)
        for kind in set(p) | set(evidence):
            if kind == DISTRICT_OFFICE or kind not in router.table.kinds:
                continue
            q = min(max(p.get(kind, 0.0), 1e-6), 1 - 1e-6)
            strong, weak = evidence.get(kind, (0.0, 0.0))
            X.append([np.log(q / (1 - q)), strong, weak])
            y.append(int(kind in true if isinstance(true, (set, frozenset)) else kind == true))
            w.append(wt)
    return np.array(X), np.array(y), np.array(w)


def fit_calibration(router: Router, model: Any, learned: AgencyModel, fw: pd.DataFrame, ordinary: pd.DataFrame,
                    rate: float, assigned: pd.DataFrame | None = None, on: str = "forwards",
                    recs: list[dict[str, Any]] | None = None) -> tuple[float, float, float, float]:
    """(a, b, c, d) of sigmoid(a logit p + b strong rule + c weak rule + d), on a mix at the real rate.

    ``on="forwards"``: validation forwards (weight 1) and ordinary tickets (weighted to ``1 - rate``
    of the mix), so the result is the probability at the real share of forwards, not among
    forwards. ``on="assigned"``: the assigned month's calibration part, a real mix of tickets with
    the kinds really assigned (``load_assigned``). ``on="both"``: the two mixes, each half the weight.
    ``model`` is the TriageModel whose topics feed the table's rules; ``recs``, its predictions for
    ``fw`` then ``ordinary`` when already made.
    """
    if on not in ("forwards", "assigned", "both"):
        raise DataError(f"[agency] calibrate_on must be forwards, assigned or both, got {on!r}")
    if on != "forwards" and (assigned is None or assigned.empty):
        raise DataError(f"[agency] calibrate_on = {on!r} needs the assigned month's calibration part (assigned, assigned_fit)")
    keep = fw["kind"].notna() & (fw["kind"] != "other")
    fw_recs = [r for r, k in zip(recs or [], keep.tolist() + [True] * len(ordinary)) if k] if recs is not None else None
    fw = fw[keep]
    norms: list[str] = []
    texts: list[str] = []
    districts: list[Any] = []
    truth: list[Any] = []
    parts: list[np.ndarray] = []
    if on in ("forwards", "both"):
        w_ord = len(fw) * (1 - rate) / (rate * max(len(ordinary), 1))
        norms += fw["norm"].tolist() + ordinary["norm"].tolist()
        texts += fw["comment"].tolist() + ordinary["text"].tolist()
        districts += fw["district"].tolist() + ordinary["district"].tolist()
        truth += fw["kind"].tolist() + [DISTRICT_OFFICE] * len(ordinary)
        parts.append(np.concatenate([np.ones(len(fw)), np.full(len(ordinary), w_ord)]))
    if on in ("assigned", "both") and assigned is not None:
        total = float(parts[0].sum()) if parts else float(len(assigned))
        norms += assigned["norm"].tolist()
        texts += assigned["comment"].tolist()
        districts += assigned["district"].tolist()
        truth += assigned["truth"].tolist()
        parts.append(np.full(len(assigned), total / max(len(assigned), 1)))
    n_fw_part = len(fw) + len(ordinary) if on in ("forwards", "both") else 0
    head: list[dict[str, Any]] = []
    if n_fw_part:
        head = fw_recs if fw_recs is not None else model.predict(texts[:n_fw_part])
    all_recs = head + (model.predict(texts[n_fw_part:]) if len(texts) > n_fw_part else [])
    X, y, w = _calibration_rows(router, _Precomputed.of(learned, norms), norms, districts, all_recs, truth, np.concatenate(parts))
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0).fit(X, y, sample_weight=w)
    a, b, c = (float(v) for v in lr.coef_[0])
    return a, b, c, float(lr.intercept_[0])


def first_kind_of(router: Router, route: dict[str, Any]) -> str | None:
    """The kind of the primary agency as the router decided it (a district office without a known
    district resolves to the city's centre, still the district office's kind)."""
    kinds = route.get("agency_kinds") or [router.directory.agencies[a].kind for a in route["agencies"][:1]]
    return kinds[0] if kinds else None


def _first_three_kinds(router: Router, route: dict[str, Any]) -> list[str]:
    """Kinds of the first three suggestions: the agencies, then the candidates."""
    kinds = list(route.get("agency_kinds") or [router.directory.agencies[a].kind for a in route["agencies"]])
    kinds += [router.directory.agencies[c["agency"]].kind for c in route["agency_candidates"]
              if c["agency"] not in route["agencies"] and c["agency"] in router.directory.agencies]
    return kinds[:3]


def score_routes(router: Router, fw: pd.DataFrame, fw_routes: list[dict[str, Any]], ordinary: pd.DataFrame,
                 ord_routes: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 14 §6 for one way of routing: forwards (first agency exact and by kind, right kind in the
    first three suggestions), ordinary tickets kept, review shares, the mixes at 2/5/8%."""
    first = [r["agencies"][0] if r["agencies"] else None for r in fw_routes]
    first_kind = [first_kind_of(router, r) for r in fw_routes]
    exact = [p is not None and p == a for p, a in zip(first, fw["agency"])]
    kind = [p == k for p, k in zip(first_kind, fw["kind"])]
    top3 = [k in _first_three_kinds(router, r) for r, k in zip(fw_routes, fw["kind"])]
    kept = [first_kind_of(router, r) == DISTRICT_OFFICE for r in ord_routes]
    per_kind: dict[str, dict[str, Any]] = {}
    for k, hit, p in zip(fw["kind"].fillna("unknown"), kind, first_kind):
        row = per_kind.setdefault(k, {"n": 0, "kind_hits": 0, "predicted": Counter()})
        row["n"] += 1
        row["kind_hits"] += int(hit)
        row["predicted"][p or "none"] += 1
    for row in per_kind.values():
        row["recall"] = round(row["kind_hits"] / row["n"], 4)
        row["predicted"] = dict(row["predicted"].most_common(3))
    out: dict[str, Any] = {
        "forwarded_exact": _share(exact), "forwarded_kind": _share(kind), "forwarded_top3_kind": _share(top3),
        "ordinary_kept": _share(kept),
        "forwarded_review": _share([r["agency_needs_review"] for r in fw_routes]),
        "ordinary_review": _share([r["agency_needs_review"] for r in ord_routes]),
        "per_kind": dict(sorted(per_kind.items(), key=lambda kv: -kv[1]["n"])),
    }
    out["ordinary_moved_to"] = dict(Counter(k or "none" for k in (first_kind_of(router, r) for r in ord_routes)
                                            if k != DISTRICT_OFFICE).most_common())
    out["mix"] = mixes(out["forwarded_kind"], out["ordinary_kept"])
    return out


def mixes(forwarded_kind: float | None, ordinary_kept: float | None) -> dict[str, float | None]:
    """Accuracy by kind on a mix with forward rate r: r * (forwards right) + (1 - r) * (ordinary kept)."""
    if forwarded_kind is None or ordinary_kept is None:
        return {f"{r:.0%}": None for r in MIX_RATES}
    return {f"{r:.0%}": round(r * forwarded_kind + (1 - r) * ordinary_kept, 4) for r in MIX_RATES}


def status_quo(router: Router, fw: pd.DataFrame) -> dict[str, Any]:
    """"Always the district office": its exact and by-kind share on forwards; it keeps every ordinary ticket."""
    offices = [router.resolve(DISTRICT_OFFICE, dist if isinstance(dist, str) and dist else None)[0] for dist in fw["district"]]
    kind = _share([k == DISTRICT_OFFICE for k in fw["kind"]])
    return {"forwarded_exact": _share([o == a for o, a in zip(offices, fw["agency"])]), "forwarded_kind": kind,
            "forwarded_top3_kind": kind, "ordinary_kept": 1.0, "forwarded_review": 0.0, "ordinary_review": 0.0,
            "mix": mixes(kind, 1.0)}


# ---- the later month with the organisations really assigned ----

_UNIT = re.compile(r"^(?:ฝ่าย|พนักงาน|งาน|กลุ่ม)\S*.*เขต\s*(\S+)$")


def assigned_kinds(value: Any, router: Router) -> set[str]:
    """Kinds of the organisations the platform assigned (``|``-joined): a district office's units
    (ฝ่ายโยธา เขตX, พนักงานกวาด เขตX) count as the district office; names the directory lacks get
    their kind from the directory builder's name patterns; ``other`` is dropped."""
    from triage.tools.build_directory import kind_of

    kinds = set()
    for name in str(value or "").split("|"):
        name = name.strip()
        if not name:
            continue
        k = router.directory.kind_of(name) or (DISTRICT_OFFICE if _UNIT.match(name) else kind_of(name)[0])
        if k != "other":
            kinds.add(k)
    return kinds


def assigned_agreement(first_kinds: list[str | None], assigned: list[set[str]]) -> dict[str, float | None]:
    """Agreement of the first agency's kind with what the platform assigned.

    ``strict`` (the headline): a ticket assigned only to the district office (and its units) is right
    at the district office; a ticket assigned to another kind of agency as well is right only when
    the first agency is of one of those other kinds. ``any``: the first kind is one of the assigned.
    """
    strict, anyk = [], []
    for k, kinds in zip(first_kinds, assigned):
        outside = kinds - {DISTRICT_OFFICE}
        strict.append(k in outside if outside else k == DISTRICT_OFFICE)
        anyk.append(k in kinds)
    return {"strict": _share(strict), "any": _share(anyk)}


def assigned_primary(value: Any, router: Router) -> str:
    """The kind a ticket of the assigned month belongs to as a training row: the first organisation
    listed that is of another kind than the district office (``other`` skipped), else the district office."""
    from triage.tools.build_directory import kind_of

    for name in str(value or "").split("|"):
        name = name.strip()
        if not name:
            continue
        k = router.directory.kind_of(name) or (DISTRICT_OFFICE if _UNIT.match(name) else kind_of(name)[0])
        if k not in ("other", DISTRICT_OFFICE):
            return k
    return DISTRICT_OFFICE


def load_assigned(path: str, router: Router) -> pd.DataFrame:
    """The assigned month in time order: comment, norm, district, ``truth`` (the set of kinds
    assigned) and ``kind`` (``assigned_primary``)."""
    from triage.data import read_table

    raw = read_table(path)
    missing = [c for c in ("timestamp", "comment", "district", "organization") if c not in raw.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; it has: {', '.join(map(str, raw.columns))}")
    raw = raw[raw["comment"].map(lambda t: isinstance(t, str) and t.strip() != "")].copy()
    raw["time"] = raw["timestamp"].astype(str)
    raw = raw.sort_values("time", kind="stable").reset_index(drop=True)
    raw["norm"] = normalize_many(raw["comment"].tolist())
    raw["truth"] = [assigned_kinds(v, router) for v in raw["organization"]]
    raw["kind"] = [assigned_primary(v, router) for v in raw["organization"]]
    return raw


def split_assigned(frame: pd.DataFrame, fit: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training rows, calibration rows, frozen test) by time: the earliest ``fit`` share halved, then the rest."""
    n_fit = round(len(frame) * fit)
    half = n_fit // 2
    return (frame.iloc[:half].reset_index(drop=True), frame.iloc[half:n_fit].reset_index(drop=True),
            frame.iloc[n_fit:].reset_index(drop=True))


def evaluate_assigned(router: Router, model: Any, learned: Any, raw: pd.DataFrame, log: Callable[[str], None],
                      name: str = "assigned", recs: list[dict[str, Any]] | None = None,
                      without_district: bool = True) -> dict[str, Any]:
    """The later real-mix month (``load_assigned``): agreement with the assigned organisations, the
    share of tickets assigned only to the district office kept there, review share, with and without
    the intake's district (the text is then the only source of the district)."""
    texts = raw["comment"].tolist()
    norms = raw["norm"].tolist()
    recs = recs if recs is not None else model.predict(texts)
    truth = raw["truth"].tolist()
    pre = _Precomputed.of(learned, norms) if learned is not None else None
    only_office = [not (k - {DISTRICT_OFFICE}) for k in truth]
    out: dict[str, Any] = {"tickets": len(raw), "from": str(raw["time"].min())[:16], "to": str(raw["time"].max())[:16],
                           "with_other_kind": _share([not o for o in only_office])}
    parts = [("with_district", raw["district"].tolist())] + ([("without_district", [None] * len(raw))] if without_district else [])
    for part, districts in parts:
        routes = [router.route(t, n, d if isinstance(d, str) else None, r, pre) for t, n, d, r in zip(texts, norms, districts, recs)]
        first = [first_kind_of(router, r) for r in routes]
        top3 = [bool(set(_first_three_kinds(router, r)) & (k - {DISTRICT_OFFICE})) for r, k, o in zip(routes, truth, only_office) if not o]
        out[part] = {"agreement": assigned_agreement(first, truth),
                     "moved": _share([k != DISTRICT_OFFICE for k in first]),
                     "office_only_kept": _share([k == DISTRICT_OFFICE for k, o in zip(first, only_office) if o]),
                     "other_kind_first": _share([k in (t - {DISTRICT_OFFICE}) for k, t, o in zip(first, truth, only_office) if not o]),
                     "other_kind_top3": _share(top3),
                     "review": _share([r["agency_needs_review"] for r in routes]),
                     "district_from_text": _share([r["agency_explanation"].get("district_source") == "text" for r in routes])}
    out["status_quo"] = {"agreement": assigned_agreement([DISTRICT_OFFICE] * len(raw), truth)}
    log(f"agency: {name} {out['from']}..{out['to']}: agreement {out['with_district']['agreement']} "
        f"(always the district office {out['status_quo']['agreement']})")
    return out


# ---- learning from reviewers: a replay in time order ----

def replay_corrections(router: Router, learned: AgencyModel, fw: pd.DataFrame, recs: list[dict[str, Any]],
                       ordinary: pd.DataFrame, ord_recs: list[dict[str, Any]], strength: float, min_sim: float,
                       rate: float, window: int = 25) -> dict[str, Any]:
    """Reviewers at work, replayed: the held-out forwards in time order with ordinary tickets of the
    held-out period between them at the real forward ``rate``. A reviewer corrects every case whose
    primary kind is wrong (a missed forward to its kind, a wrongly moved ordinary ticket back to the
    district office), and the router remembers it at once (``CorrectionMemory``). The curve: by-kind
    accuracy of the next ``window`` forwards (and the ordinary tickets among them kept) against the
    corrections seen so far, next to the same cases without memory.
    """
    model = copy.copy(learned)
    model.memory_ = CorrectionMemory(list(learned.kinds), strength, min_sim)
    n_ord = min(len(ordinary), round(len(fw) * (1 - rate) / rate))
    per = n_ord / max(len(fw), 1)
    stream: list[tuple[str, int]] = []
    for i in range(len(fw)):
        stream += [("ord", j) for j in range(round(i * per), round((i + 1) * per))]
        stream.append(("fw", i))
    X_fw = learned.features(fw["norm"].tolist())
    X_ord = learned.features(ordinary["norm"].iloc[:n_ord].tolist())
    # the model's probabilities in one batch each; per case only the memory's adjustment is computed
    clf = learned.pipeline[-1]
    P_fw, P_ord = clf.predict_proba(X_fw), clf.predict_proba(X_ord)
    base_model = _Precomputed.of(learned, fw["norm"].tolist() + ordinary["norm"].iloc[:n_ord].tolist())
    rows: list[dict[str, Any]] = []
    for source, i in stream:
        if source == "fw":
            text, norm, dist, kind, rec, x, p = (fw["comment"].iloc[i], fw["norm"].iloc[i], fw["district"].iloc[i], fw["kind"].iloc[i],
                                                 recs[i], X_fw[i], P_fw[i:i + 1])
        else:
            text, norm, dist, kind, rec, x, p = (ordinary["text"].iloc[i], ordinary["norm"].iloc[i], ordinary["district"].iloc[i],
                                                 DISTRICT_OFFICE, ord_recs[i], X_ord[i], P_ord[i:i + 1])
        d = dist if isinstance(dist, str) else None
        remembered = model.memory_.adjust(x, p)[0]
        live = _Precomputed({norm: {k: float(v) for k, v in zip(learned.kinds, remembered)}}, learned, base_model.ranks)
        got = first_kind_of(router, router.route(text, norm, d, rec, live))
        base = first_kind_of(router, router.route(text, norm, d, rec, base_model))
        rows.append({"source": source, "seen": len(model.memory_), "hit": got == kind, "base": base == kind})
        if got != kind and isinstance(kind, str) and kind in model.kinds:
            model.memory_.add(x, [kind])
    fw_rows = [r for r in rows if r["source"] == "fw"]
    curve = []
    for start in range(0, len(fw_rows), window):
        part = fw_rows[start:start + window]
        lo, hi = rows.index(part[0]), rows.index(part[-1])
        ords = [r for r in rows[lo:hi + 1] if r["source"] == "ord"]
        curve.append({"forwards": f"{start + 1}-{start + len(part)}", "corrections_seen": part[0]["seen"],
                      "by_kind": _share([r["hit"] for r in part]), "by_kind_without_memory": _share([r["base"] for r in part]),
                      "ordinary_kept": _share([r["hit"] for r in ords]), "ordinary_kept_without_memory": _share([r["base"] for r in ords])})
    ords = [r for r in rows if r["source"] == "ord"]
    return {"curve": curve, "corrections": len(model.memory_), "forwards": len(fw_rows), "ordinary": len(ords),
            "by_kind": _share([r["hit"] for r in fw_rows]), "by_kind_without_memory": _share([r["base"] for r in fw_rows]),
            "ordinary_kept": _share([r["hit"] for r in ords]), "ordinary_kept_without_memory": _share([r["base"] for r in ords]),
            "strength": strength, "min_sim": min_sim}


def _time_parts(frame: pd.DataFrame, config: DatasetConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Ordinary tickets split like the dataset: train < valid_from <= valid < test_from <= test."""
    valid_from, test_from = config.split.get("valid_from"), config.split.get("test_from")
    t = frame["time"].astype(str)
    if valid_from and test_from and (t < str(valid_from)).any() and (t >= str(test_from)).any():
        v, e = str(valid_from), str(test_from)
        return frame[t < v], frame[(t >= v) & (t < e)], frame[t >= e], f"train < {v} <= valid < {e} <= test"
    shuffled = frame.sample(frac=1.0, random_state=seed)
    a, b = int(len(shuffled) * 0.6), int(len(shuffled) * 0.7)
    return shuffled.iloc[:a], shuffled.iloc[a:b], shuffled.iloc[b:], "random 60/10/30"


def _sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return frame.sample(min(n, len(frame)), random_state=seed).reset_index(drop=True)


def length_matched_sample(pool: pd.DataFrame, reference: list[str], n: int, seed: int, bins: int = 10) -> pd.DataFrame:
    """``n`` rows of ``pool`` (column ``norm``) drawn so that their text lengths (boilerplate stripped)
    fall in the deciles of the ``reference`` texts' lengths as often as the reference's do."""
    if not reference or len(pool) <= n:
        return _sample(pool, n, seed)
    ref = np.array([len(strip_intake(t)) for t in reference])
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    lens = np.array([len(strip_intake(t)) for t in pool["norm"]])
    b = np.searchsorted(edges, lens, side="right")
    pool_count = np.bincount(b, minlength=len(edges) + 1)
    w = ref_share[b] / np.maximum(pool_count[b], 1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=n, replace=False, p=w / w.sum())
    return pool.iloc[np.sort(pick)].reset_index(drop=True)


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The §6 numbers as text lines (the training log, bench/agency.py and the report print these)."""
    h = metrics["held_out"]
    lines = [(f"held-out forwards {h['forwards']} ({h['forwards_from']}..{h['forwards_to']}), ordinary tickets "
              f"{h['ordinary']} ({h['ordinary_split']}); forward rate {metrics['forward_rate']}, move threshold "
              f"{metrics['move_threshold']}, calibration {metrics['calibration']}"),
             f"{'':12}{'by kind':>8}{'top-3':>7}{'exact':>7}{'kept':>7}{'mix 2%':>8}{'mix 5%':>8}{'mix 8%':>8}{'review fw/ord':>15}"]
    for name, label in (("router", "router"), ("table_only", "table only"), ("status_quo", "status quo")):
        m = metrics[name]
        mix = m["mix"]
        lines.append(f"{label:12}{m['forwarded_kind']!s:>8}{m['forwarded_top3_kind']!s:>7}{m['forwarded_exact']!s:>7}"
                     f"{m['ordinary_kept']!s:>7}{mix['2%']!s:>8}{mix['5%']!s:>8}{mix['8%']!s:>8}"
                     f"{(str(m['forwarded_review']) + '/' + str(m['ordinary_review'])):>15}")
    a = metrics.get("assigned")
    if a:
        w, wo, sq = a["with_district"], a["without_district"], a["status_quo"]
        lines.append(f"assigned {a['from']}..{a['to']} (frozen later test, {a['tickets']} tickets, {a['with_other_kind']} with another kind): "
                     f"agreement strict {w['agreement']['strict']} / any {w['agreement']['any']} (always the district office "
                     f"{sq['agreement']['strict']} / {sq['agreement']['any']}"
                     + (f"; table only {a['table_only']['agreement']['strict']}" if a.get("table_only") else "") + ")")
        lines.append(f"  tickets assigned only to the district office kept there {w['office_only_kept']}; those with another kind: "
                     f"first agency of that kind {w['other_kind_first']}, among the first three {w['other_kind_top3']}; "
                     f"moved {w['moved']}, review {w['review']}")
        lines.append(f"  without the intake's district: agreement strict {wo['agreement']['strict']}, review {wo['review']}, "
                     f"district read from the text {wo['district_from_text']}")
    v = metrics.get("validation")
    if v:
        vr = v["router"]
        lines.append(f"validation (settings are chosen on these): forwards by kind {vr['forwarded_kind']}, top-3 {vr['forwarded_top3_kind']}, "
                     f"ordinary kept {vr['ordinary_kept']}, mix {vr['mix']}"
                     + (f"; assigned {v['assigned']['from']}..{v['assigned']['to']}: agreement strict "
                        f"{v['assigned']['with_district']['agreement']['strict']} (always the district office "
                        f"{v['assigned']['status_quo']['agreement']['strict']}), office-only kept "
                        f"{v['assigned']['with_district']['office_only_kept']}" if v.get("assigned") else ""))
        if v.get("separation"):
            lines.append(f"  separation by P(another kind), ROC AUC on validation: {v['separation']}")
    r = metrics.get("replay")
    if r:
        lines.append(f"replay: {r['forwards']} later forwards in time order, {r['ordinary']} ordinary tickets between them, "
                     f"{r['corrections']} corrections remembered: forwards by kind {r['by_kind']} (without memory "
                     f"{r['by_kind_without_memory']}), ordinary kept {r['ordinary_kept']} (without {r['ordinary_kept_without_memory']})")
        lines += [f"  forwards {c['forwards']:>9}: after {c['corrections_seen']:3} corrections by kind {c['by_kind']!s:>6} "
                  f"(without {c['by_kind_without_memory']!s:>6}), ordinary kept {c['ordinary_kept']} "
                  f"(without {c['ordinary_kept_without_memory']})" for c in r["curve"]]
    return lines


def train_agency(model: Any, frame: pd.DataFrame, config: DatasetConfig, corrections: pd.DataFrame | None,
                 correction_weight: int, log: Callable[[str], None],
                 router: Router | None = None) -> tuple[AgencyModel, dict[str, Any]]:
    """Fit, calibrate and evaluate the agency model on time-ordered data, then fit the shipped one.

    Forwards are split by time into train / validation / test (the latest ``holdout``), ordinary
    finished tickets by the dataset's split dates. The model is fitted on train, the calibration
    on validation (a mix at ``forward_rate``); the model refitted on train + validation keeps that
    calibration and is scored on test and on the later ``assigned`` month. The shipped model is
    fitted on everything with the same calibration. ``model`` is the fitted TriageModel (its
    topics feed the table).
    """
    st = AgencySettings.from_dict(dict(config.agency))
    router = router or Router.load()
    fw = load_forwards(config, st, router)
    corr, unknown_corr = correction_rows(corrections, router)
    bkk = frame[frame["district"].isin(router.directory.bangkok_districts)]
    bkk = bkk[~bkk["id"].astype(str).isin(set(corr["id"]))]  # a corrected ticket is not "kept at the district office"
    ids = ordinary_ids(config, st)
    if ids is not None:
        bkk = bkk[bkk["id"].astype(str).isin(ids)]
    if len(fw) < 20 or len(bkk) < 20:
        raise DataError(f"too little agency data: {len(fw)} forwards, {len(bkk)} ordinary Bangkok tickets")
    a, b = round(len(fw) * (1 - st.holdout - st.valid)), round(len(fw) * (1 - st.holdout))
    fw_tr, fw_va, fw_te = fw.iloc[:a], fw.iloc[a:b].reset_index(drop=True), fw.iloc[b:].reset_index(drop=True)
    o_tr, o_va, o_te, o_desc = _time_parts(bkk, config, st.seed)
    reference = _routable(fw.iloc[:a])["norm"].tolist() if st.length_match else []
    o_tr = length_matched_sample(o_tr, reference, st.ordinary_train, st.seed)
    o_va, o_te = _sample(o_va, 2 * st.ordinary_eval, st.seed), _sample(o_te, st.ordinary_eval, st.seed)
    rate = st.forward_rate
    threshold = decision_threshold(rate, st.decision_rate, st.move_threshold)
    asg_tr = asg_va = asg_te = None
    if st.assigned:
        try:
            asg = load_assigned(config.resolve(st.assigned), router)
            asg_tr, asg_va, asg_te = split_assigned(asg, st.assigned_fit)
        except DataError as exc:
            log(f"agency: no assigned-organisations month: {exc}")
    asg_fit = pd.concat([asg_tr, asg_va], ignore_index=True) if asg_tr is not None else None
    aw = st.assigned_weight
    drop: frozenset[str] = frozenset()
    if st.source_ratio > 0 and asg_tr is not None:
        newer = asg_tr[[not (k - {DISTRICT_OFFICE}) for k in asg_tr["truth"]]]["norm"].tolist()
        drop = source_words(newer, o_tr["norm"].tolist(), st.source_ratio, st.source_min)
        log(f"agency: {len(drop)} source words left out ({len(newer)} 2023 office-only tickets against {len(o_tr)} ordinary ones)")

    def fit(fw_rows: pd.DataFrame, ord_rows: pd.DataFrame, asg_rows: pd.DataFrame | None) -> AgencyModel:
        asg_rows = asg_rows if aw > 0 else None
        return fit_agency_model(*_training_set(fw_rows, ord_rows, corr, correction_weight, rate, asg_rows, aw), C=st.C,
                                drop_words=drop)

    def ranker(fw_rows: pd.DataFrame, asg_rows: pd.DataFrame | None) -> Pipeline | None:
        other = asg_rows[asg_rows["kind"] != DISTRICT_OFFICE] if asg_rows is not None and aw > 0 else None
        return fit_ranker(fw_rows, st.rank_C, corr, other)

    first = fit(fw_tr, o_tr, asg_tr)
    v_texts = fw_va["comment"].tolist() + o_va["text"].tolist()
    v_recs = model.predict(v_texts)
    calibration = fit_calibration(router, model, first, fw_va, o_va, rate, asg_va, st.calibrate_on, v_recs)
    log(f"agency: calibration {tuple(round(v, 3) for v in calibration)} fitted on {st.calibrate_on}: {len(fw_va)} validation "
        f"forwards + {len(o_va)} ordinary tickets at a {rate:.0%} forward rate"
        + (f", {len(asg_va)} tickets of the assigned month" if st.calibrate_on != "forwards" and asg_va is not None else "")
        + f"; move threshold {threshold} (break-even {st.move_threshold} at a {st.decision_rate or rate:.0%} forward rate)")

    # validation: the numbers settings are chosen on (the first model, its calibration, validation rows)
    first.calibration_, first.move_threshold_, first.forward_rate_ = calibration, threshold, rate
    first.ranker_ = ranker(fw_tr, asg_tr)
    v_norms = fw_va["norm"].tolist() + o_va["norm"].tolist()
    v_pre = _Precomputed.of(first, v_norms)
    v_routes = [router.route(t, nn, d if isinstance(d, str) else None, r, v_pre)
                for t, nn, d, r in zip(v_texts, v_norms, fw_va["district"].tolist() + o_va["district"].tolist(), v_recs)]
    validation: dict[str, Any] = {"router": score_routes(router, fw_va, v_routes[:len(fw_va)], o_va, v_routes[len(fw_va):])}
    validation["router"]["per_kind"] = {k: {"n": v["n"], "right": v["kind_hits"], "predicted": v["predicted"]}
                                        for k, v in validation["router"]["per_kind"].items()}
    if asg_va is not None and len(asg_va):
        validation["assigned"] = evaluate_assigned(router, model, first, asg_va, log, "validation: assigned", without_district=False)
        validation["separation"] = separation(first, fw_va, o_va, asg_va)
    if st.validation_only:  # choosing settings: nothing later is fitted or looked at
        metrics_v = {"validation": validation, "forward_rate": rate, "move_threshold": threshold, "decision_rate": st.decision_rate or rate,
                     "calibration": [round(v, 4) for v in calibration], "source_words": len(drop), "length_match": st.length_match}
        log("agency (validation only): " + str(metrics_v))
        return first, metrics_v

    held = fit(pd.concat([fw_tr, fw_va]), pd.concat([o_tr, o_va]), asg_fit)
    held.calibration_, held.move_threshold_, held.forward_rate_ = calibration, threshold, rate
    held.ranker_ = ranker(pd.concat([fw_tr, fw_va]), asg_fit)
    texts, norms = fw_te["comment"].tolist() + o_te["text"].tolist(), fw_te["norm"].tolist() + o_te["norm"].tolist()
    districts = fw_te["district"].tolist() + o_te["district"].tolist()
    recs = model.predict(texts)
    pre = _Precomputed.of(held, norms)
    n = len(fw_te)

    def routes(learned: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        out = [router.route(t, nn, d if isinstance(d, str) else None, r, learned)
               for t, nn, d, r in zip(texts, norms, districts, recs)]
        return out[:n], out[n:]

    with_model, table_only = routes(pre), routes(None)
    metrics: dict[str, Any] = {
        "held_out": {"forwards": n, "forwards_from": fw_te["time"].iloc[0][:10], "forwards_to": fw_te["time"].iloc[-1][:10],
                     "ordinary": len(o_te), "ordinary_split": o_desc,
                     "ordinary_filter": f"state {st.ordinary_state}, no forward note" if ids is not None else "all tickets"},
        "router": score_routes(router, fw_te, with_model[0], o_te, with_model[1]),
        "table_only": score_routes(router, fw_te, table_only[0], o_te, table_only[1]),
        "status_quo": status_quo(router, fw_te),
        "forward_rate": rate, "move_threshold": threshold, "decision_rate": st.decision_rate or rate,
        "calibration": [round(v, 4) for v in calibration], "calibrate_on": st.calibrate_on, "source_words": len(drop),
        "assigned_fit": {"share": st.assigned_fit, "weight": aw,
                         "training_rows": 0 if asg_tr is None else len(asg_tr), "calibration_rows": 0 if asg_va is None else len(asg_va)},
        "validation": validation,
        "unknown_forward_agencies": int(fw["agency"].isna().sum()),
        "corrections": {"used": len(corr), "unknown_agency": unknown_corr, "weight": correction_weight},
    }
    if asg_te is not None and len(asg_te):
        te_recs = model.predict(asg_te["comment"].tolist())
        metrics["assigned"] = evaluate_assigned(router, model, held, asg_te, log, "assigned (frozen later test)", te_recs)
        metrics["assigned"]["table_only"] = evaluate_assigned(router, model, None, asg_te, lambda _m: None, recs=te_recs,
                                                                without_district=False)["with_district"]
    if st.replay:
        metrics["replay"] = replay_corrections(router, held, fw_te, recs[:n], o_te, recs[n:], st.memory_strength,
                                               st.memory_min_sim, rate)

    final = fit(fw, length_matched_sample(bkk, reference, st.ordinary_train, st.seed), asg_fit)
    final.calibration_, final.move_threshold_, final.forward_rate_ = calibration, threshold, rate
    final.ranker_ = ranker(fw, asg_fit)
    final.memory_strength_, final.memory_min_sim_ = st.memory_strength, st.memory_min_sim
    metrics["trained_on"] = final.trained_on
    lines = summary_lines(metrics)
    metrics["summary"] = "\n".join(lines)
    log("agency: " + "\n        ".join(lines))
    return final, metrics
