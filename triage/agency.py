"""The learned agency model: which kind of agency owns a complaint, learned from real forwards.

Training rows: tickets that the first handler had to forward (``routing/traffy-forwards.csv``,
labelled with the kind of the agency they were forwarded to), ordinary tickets of the dataset
(labelled ``district_office``: handled where they were filed), and reviewers' agency corrections
(weighted like topic corrections). The model is a stock scikit-learn pipeline, word TF-IDF of
normalised text (``triage.text.word_analyzer``) into a multinomial logistic regression; it
predicts a KIND, which the router resolves to a concrete agency through the district, so a
correction for one district's police station teaches "police" for all districts.

Evaluation (issue 4 §6), on a held-out, time-ordered part: (a) of forwarded tickets, the share
whose first predicted agency is the one they were forwarded to, exactly and by kind; (b) of
ordinary tickets, the share kept at their district office; for the router, the table alone and
the status quo ("always the district office").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from triage.data import DatasetConfig, read_table
from triage.errors import DataError
from triage.routing import DISTRICT_OFFICE, Router
from triage.text import normalize_many, word_analyzer

FORWARD_COLUMNS = ["timestamp", "comment", "district", "forwarded_to"]


@dataclass
class AgencySettings:
    """The ``[agency]`` section of a dataset config."""

    forwards: str
    holdout: float = 0.3  # the latest share of forwards held out for evaluation
    valid: float = 0.2  # the share before it on which the override threshold is chosen
    min_kept: float = 0.96  # the threshold keeps at least this share of ordinary tickets (validation)
    ordinary_train: int = 6000  # ordinary tickets sampled as "kept at the district office"
    ordinary_eval: int = 2000
    C: float = 4.0
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgencySettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown or "forwards" not in raw:
            raise DataError(f"[agency] needs 'forwards' and knows only {sorted(known)}; got {sorted(raw)}")
        return cls(**raw)


@dataclass
class AgencyModel:
    """Kind-of-agency probabilities for a normalised complaint (``triage.routing.KindModel``)."""

    pipeline: Pipeline
    kinds: list[str]
    trained_on: dict[str, int]
    override_: float | None = None  # the router's thresholds, tuned on validation (triage.routing.Router.decide)
    veto_: float | None = None
    bonus_: float | None = None

    def kind_proba_many(self, norm_texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(norm_texts)

    def kind_proba(self, norm: str) -> dict[str, float]:
        p = self.kind_proba_many([norm])[0]
        return {k: float(v) for k, v in zip(self.kinds, p)}


@dataclass
class _Precomputed:
    """An agency model's probabilities computed in one batch, looked up by text (evaluation only)."""

    proba: dict[str, dict[str, float]]
    override_: float | None = None
    veto_: float | None = None
    bonus_: float | None = None

    @classmethod
    def of(cls, model: AgencyModel, norms: list[str], settings: tuple[float, float, float] | None = None) -> _Precomputed:
        P = model.kind_proba_many(norms)
        return cls({n: {k: float(v) for k, v in zip(model.kinds, row)} for n, row in zip(norms, P)}, *(settings or ()))

    def kind_proba(self, norm: str) -> dict[str, float]:
        return self.proba[norm]


def fit_agency_model(norm_texts: list[str], kinds: list[str], weights: np.ndarray | None = None,
                     C: float = 4.0) -> AgencyModel:
    """Fit the kind classifier on normalised texts (at least two kinds)."""
    if len(set(kinds)) < 2:
        raise DataError(f"the agency model needs at least two kinds of agency, got {sorted(set(kinds))}")
    pipe = Pipeline([
        ("words", TfidfVectorizer(analyzer=word_analyzer, min_df=2, sublinear_tf=True, dtype=np.float32)),
        ("clf", LogisticRegression(C=C, max_iter=3000)),
    ])
    pipe.fit(norm_texts, kinds, clf__sample_weight=weights)
    return AgencyModel(pipe, [str(k) for k in pipe.classes_], dict(Counter(kinds)))


def load_forwards(config: DatasetConfig, settings: AgencySettings, router: Router) -> pd.DataFrame:
    """The forwards with their normalised text and the kind of the agency they went to."""
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


def _training_set(forwards: pd.DataFrame, ordinary: pd.DataFrame, corrections: pd.DataFrame,
                  weight: int) -> tuple[list[str], list[str], np.ndarray]:
    routable = forwards[forwards["kind"].notna() & (forwards["kind"] != "other")]
    texts = routable["norm"].tolist() + ordinary["norm"].tolist() + corrections["norm"].tolist()
    kinds = routable["kind"].tolist() + [DISTRICT_OFFICE] * len(ordinary) + corrections["kind"].tolist()
    weights = np.concatenate([np.ones(len(routable) + len(ordinary)), np.full(len(corrections), float(max(1, weight)))])
    return texts, kinds, weights


def _share(x: list[bool]) -> float | None:
    return round(float(np.mean(x)), 4) if x else None


def _route_all(router: Router, records: list[dict[str, Any]], texts: list[str], norms: list[str],
               districts: list[str | None], learned: Any) -> list[dict[str, Any]]:
    return [router.route(t, n, d, rec, learned) for t, n, d, rec in zip(texts, norms, districts, records)]


def score_routes(router: Router, fw: pd.DataFrame, fw_routes: list[dict[str, Any]], ordinary: pd.DataFrame,
                 ord_routes: list[dict[str, Any]]) -> dict[str, Any]:
    """The §6 numbers for one way of routing: (a) exact and by kind on forwards, (b) kept on ordinary."""
    d = router.directory
    first = [r["agencies"][0] if r["agencies"] else None for r in fw_routes]
    exact = [p is not None and p == a for p, a in zip(first, fw["agency"])]
    kind = [p is not None and d.agencies[p].kind == k for p, k in zip(first, fw["kind"])]
    offices = [router.resolve(DISTRICT_OFFICE, dist)[0] for dist in ordinary["district"]]
    kept = [bool(r["agencies"]) and r["agencies"][0] == o for r, o in zip(ord_routes, offices)]
    per_kind: dict[str, dict[str, Any]] = {}
    for k, hit, p in zip(fw["kind"].fillna("unknown"), kind, first):
        row = per_kind.setdefault(k, {"n": 0, "kind_hits": 0, "predicted": Counter()})
        row["n"] += 1
        row["kind_hits"] += int(hit)
        row["predicted"][d.agencies[p].kind if p else "none"] += 1
    for row in per_kind.values():
        row["recall"] = round(row["kind_hits"] / row["n"], 4)
        row["predicted"] = dict(row["predicted"].most_common(3))
    return {
        "forwarded_exact": _share(exact), "forwarded_kind": _share(kind), "ordinary_kept": _share(kept),
        "forwarded_review": _share([r["agency_needs_review"] for r in fw_routes]),
        "ordinary_review": _share([r["agency_needs_review"] for r in ord_routes]),
        "per_kind": dict(sorted(per_kind.items(), key=lambda kv: -kv[1]["n"])),
    }


def status_quo(router: Router, fw: pd.DataFrame) -> dict[str, Any]:
    """"Always the district office": its exact and by-kind share on forwards; it keeps every ordinary ticket."""
    offices = [router.resolve(DISTRICT_OFFICE, dist)[0] for dist in fw["district"]]
    return {"forwarded_exact": _share([o == a for o, a in zip(offices, fw["agency"])]),
            "forwarded_kind": _share([k == DISTRICT_OFFICE for k in fw["kind"]]), "ordinary_kept": 1.0}


def _primary_kinds(router: Router, norms: list[str], districts: list[Any], records: list[dict[str, Any]],
                   learned: _Precomputed, grid: list[tuple[float, float, float]]) -> np.ndarray:
    """(rows, settings) array of the primary kind the router picks for each (override, veto, bonus)."""
    out = np.empty((len(norms), len(grid)), dtype=object)
    for i, (n, d, rec) in enumerate(zip(norms, districts, records)):
        d = d if isinstance(d, str) and d else None
        table = router.table_kinds(n, router.rule_topics(rec))
        p = router.usable(learned.kind_proba(n), d)
        for j, setting in enumerate(grid):
            out[i, j] = router.key_kind(router.decide(table, p, *setting)[1][0])
    return out


def _tune_thresholds(router: Router, model: Any, fw: pd.DataFrame, ordinary: pd.DataFrame, learned: AgencyModel,
                     min_kept: float) -> tuple[tuple[float, float, float], list[dict[str, Any]]]:
    """(override, veto, bonus) with most forwards routed to the right kind while keeping ``min_kept``."""
    grid = [(round(float(o), 3), round(float(v), 3), b) for o in np.arange(0.05, 1.001, 0.05)
            for v in np.arange(0.5, 1.001, 0.05) for b in (0.0, 0.15, 0.3)]
    norms = fw["norm"].tolist() + ordinary["norm"].tolist()
    recs = model.predict(fw["comment"].tolist() + ordinary["text"].tolist())
    K = _primary_kinds(router, norms, fw["district"].tolist() + ordinary["district"].tolist(), recs,
                       _Precomputed.of(learned, norms), grid)
    n = len(fw)
    kind_ok = (K[:n] == fw["kind"].to_numpy()[:, None]).mean(axis=0)
    kept = (K[n:] == DISTRICT_OFFICE).mean(axis=0)
    curve = [{"override": o, "veto": v, "bonus": bb, "forwarded_kind": round(float(a), 4), "ordinary_kept": round(float(b), 4)}
             for (o, v, bb), a, b in zip(grid, kind_ok, kept)]
    ok = [c for c in curve if c["ordinary_kept"] >= min_kept]
    best = max(ok, key=lambda c: (c["forwarded_kind"], c["ordinary_kept"], c["override"])) if ok else \
        max(curve, key=lambda c: (c["ordinary_kept"], c["forwarded_kind"]))
    return (best["override"], best["veto"], best["bonus"]), curve


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


def train_agency(model: Any, frame: pd.DataFrame, config: DatasetConfig, corrections: pd.DataFrame | None,
                 correction_weight: int, log: Callable[[str], None],
                 router: Router | None = None) -> tuple[AgencyModel, dict[str, Any]]:
    """Tune and evaluate the router on time-ordered held-out data, then fit the shipped agency model.

    Forwards are split by time into train / validation / test (the latest ``holdout``), ordinary
    tickets by the dataset's split dates. The override threshold is chosen on validation (most
    forwards to the right kind while keeping ``min_kept`` of ordinary tickets), the model refitted
    on train + validation and scored on test; the shipped model is fitted on everything.
    ``model`` is the fitted TriageModel (its topics feed the table).
    """
    st = AgencySettings.from_dict(dict(config.agency))
    router = router or Router.load()
    fw = load_forwards(config, st, router)
    corr, unknown_corr = correction_rows(corrections, router)
    bkk = frame[frame["district"].isin(router.directory.bangkok_districts)]
    bkk = bkk[~bkk["id"].astype(str).isin(set(corr["id"]))]  # a corrected ticket is not "kept at the district office"
    if len(fw) < 20 or len(bkk) < 20:
        raise DataError(f"too little agency data: {len(fw)} forwards, {len(bkk)} Bangkok tickets")
    a, b = round(len(fw) * (1 - st.holdout - st.valid)), round(len(fw) * (1 - st.holdout))
    fw_tr, fw_va, fw_te = fw.iloc[:a], fw.iloc[a:b].reset_index(drop=True), fw.iloc[b:].reset_index(drop=True)
    o_tr, o_va, o_te, o_desc = _time_parts(bkk, config, st.seed)
    o_tr, o_va, o_te = _sample(o_tr, st.ordinary_train, st.seed), _sample(o_va, st.ordinary_eval, st.seed), \
        _sample(o_te, st.ordinary_eval, st.seed)

    first = fit_agency_model(*_training_set(fw_tr, o_tr, corr, correction_weight), C=st.C)
    (override, veto, bonus), curve = _tune_thresholds(router, model, fw_va, o_va, first, st.min_kept)
    log(f"agency: override {override}, veto {veto}, bonus {bonus} chosen on {len(fw_va)} validation forwards + {len(o_va)} ordinary tickets")

    held = fit_agency_model(*_training_set(pd.concat([fw_tr, fw_va]), pd.concat([o_tr, o_va]), corr, correction_weight),
                            C=st.C)
    held.override_, held.veto_, held.bonus_ = override, veto, bonus
    texts, norms = fw_te["comment"].tolist() + o_te["text"].tolist(), fw_te["norm"].tolist() + o_te["norm"].tolist()
    districts = fw_te["district"].tolist() + o_te["district"].tolist()
    recs = model.predict(texts)
    pre = _Precomputed.of(held, norms, (override, veto, bonus))
    n = len(fw_te)

    def routes(learned: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        out = [router.route(t, nn, d if isinstance(d, str) else None, r, learned)
               for t, nn, d, r in zip(texts, norms, districts, recs)]
        return out[:n], out[n:]

    with_model, table_only = routes(pre), routes(None)
    metrics: dict[str, Any] = {
        "held_out": {"forwards": n, "forwards_from": fw_te["time"].iloc[0][:10], "forwards_to": fw_te["time"].iloc[-1][:10],
                     "ordinary": len(o_te), "ordinary_split": o_desc},
        "router": score_routes(router, fw_te, with_model[0], o_te, with_model[1]),
        "table_only": score_routes(router, fw_te, table_only[0], o_te, table_only[1]),
        "status_quo": status_quo(router, fw_te),
        "override": override, "veto": veto, "bonus": bonus, "min_kept_on_validation": st.min_kept, "threshold_curve": curve,
        "unknown_forward_agencies": int(fw["agency"].isna().sum()),
        "corrections": {"used": len(corr), "unknown_agency": unknown_corr, "weight": correction_weight},
    }
    final = fit_agency_model(*_training_set(fw, _sample(bkk, st.ordinary_train, st.seed), corr, correction_weight), C=st.C)
    final.override_, final.veto_, final.bonus_ = override, veto, bonus
    metrics["trained_on"] = final.trained_on
    r, s, t = metrics["router"], metrics["status_quo"], metrics["table_only"]
    metrics["summary"] = (
        f"held-out forwards {n} ({metrics['held_out']['forwards_from']}..{metrics['held_out']['forwards_to']}), "
        f"ordinary tickets {len(o_te)} ({o_desc}); override {override}, veto {veto}, bonus {bonus}\n"
        f"{'':12}{'exact':>8}{'by kind':>9}{'kept (b)':>10}\n"
        + "\n".join(f"{name:12}{m['forwarded_exact']!s:>8}{m['forwarded_kind']!s:>9}{m['ordinary_kept']!s:>10}"
                    for name, m in (("router", r), ("table only", t), ("status quo", s))))
    log("agency: " + metrics["summary"].replace("\n", "\n        "))
    return final, metrics
