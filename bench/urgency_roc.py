"""The arithmetic of issue 12's urgency goal, from the shipped head's out-of-fold scores BEFORE the frozen month.

    python bench/urgency_roc.py --model models/current --data ../shared/data

Out-of-fold P(high) of the shipped head by the cross-validation of ``bench/urgency_rank.py`` (5 folds
over every labelled ticket before ``[split] urgency_frozen_from``; 2022-12 is never loaded), scored on
the rows outside the ``cue`` stratum. Prints:

1. the ROC curve (recall = TPR, false-alarm rate = FPR, precision) at flagged shares 2% .. 40%, and
   the AUC; the shares 16% / 18% / 20% are the ones the issue's budget (<= 20% flagged) is about;
2. what recall 0.90 at <= 20% flagged needs at the observed prevalence p of high: the flagged share
   is p * TPR + (1 - p) * FPR, so the FPR allowed at TPR 0.90 is (0.20 - 0.9 p) / (1 - p); the AUC an
   equal-variance binormal ROC through that point has; the AUC of a binormal ROC with the observed
   slope (probit(TPR) = a + b probit(FPR), fitted by least squares to the observed curve) through it;
   and, empirically, how far every high ticket's score must move up (on the logit scale, all by the
   same amount) before 90% of them are in the top 20%, and the AUC the moved scores have;
3. the label agreement in the same terms: on the tickets labelled twice blind (``labels/urgency-blind.csv``,
   rows before the frozen month only, and ``labels/urgency-cue-blind.csv``), the second labeller's
   highs as a "flag" of the first labeller's (recall at the share it flags), the head's out-of-fold
   score at the cross-validation's 16/18/20% thresholds against either labeller, and a model that
   reproduced the first labeller exactly (its highs first, the head's score below them) scored
   against the second labeller.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from triage import registry
from triage.training import _sampling_design, share_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from urgency_cues import labelled_before_frozen, labelled_bench_args  # noqa: E402  (bench/urgency_cues.py: the same tickets)
from urgency_rank import _fit_score, _recall_at, head_blocks, head_design  # noqa: E402  (the head's design and learner)

SHARES = (0.16, 0.18, 0.20)
GOAL_RECALL, GOAL_SHARE = 0.90, 0.20


def shipped_oof(model_path: str, config_path: str, data: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The labelled rows before the frozen month, the shipped head's out-of-fold P(high) (urgency_rank.py's
    ``shipped``) and the mask of rows outside the cue stratum."""
    config, rows, _frozen = labelled_before_frozen(config_path, data)
    norm = rows["norm"].tolist()
    y = rows["urgency"].to_numpy()
    counted = share_rows(_sampling_design(config, rows), len(rows))
    scored = np.ones(len(y), dtype=bool) if counted is None else counted
    model, _meta = registry.load(model_path)
    W, dense = head_blocks(model, norm)
    Z = head_design(norm, W, dense, np.ones(len(y), dtype=bool))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    parts = Parallel(n_jobs=2)(delayed(_fit_score)(Z, y, tr, te, 0.5, False, "balanced") for tr, te in folds)
    oof = np.zeros(len(y))
    for (_tr, te), s in zip(folds, parts):
        oof[te] = s
    return rows, oof, scored


def roc_points(score: np.ndarray, high: np.ndarray, shares: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(flagged share, TPR, FPR, precision) when the top ``share`` of ``score`` is flagged."""
    out = []
    for q in shares:
        flag = score >= np.quantile(score, 1 - q)
        tp = int((flag & high).sum())
        out.append((float(flag.mean()), tp / high.sum(), int((flag & ~high).sum()) / (~high).sum(), tp / max(flag.sum(), 1)))
    return out


def binormal_fit(score: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """(a, b) of probit(TPR) = a + b probit(FPR), least squares over the empirical ROC at FPR 0.01 .. 0.60."""
    thr = np.quantile(score[~high], 1 - np.linspace(0.01, 0.60, 60))
    fpr = np.array([(score[~high] >= t).mean() for t in thr])
    tpr = np.array([(score[high] >= t).mean() for t in thr])
    ok = (tpr > 0) & (tpr < 1) & (fpr > 0) & (fpr < 1)
    b, a = np.polyfit(stats.norm.ppf(fpr[ok]), stats.norm.ppf(tpr[ok]), 1)
    return float(a), float(b)


def binormal_auc(a: float, b: float) -> float:
    return float(stats.norm.cdf(a / np.sqrt(1 + b * b)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def shift_needed(score: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """The smallest shift d of every high's logit score for which recall at the top GOAL_SHARE reaches
    GOAL_RECALL (the flagged set recomputed on the moved scores), and the AUC of the moved scores."""
    z = _logit(score)

    def gap(d: float) -> float:
        return _recall_at(z + d * high, high, GOAL_SHARE) - GOAL_RECALL

    lo, hi = 0.0, 10.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if gap(mid) >= 0 else (mid, hi)
    return hi, float(roc_auc_score(high, z + hi * high))


def agreement(name: str, first: pd.DataFrame, second: pd.DataFrame, rows: pd.DataFrame, oof: np.ndarray,
              thresholds: dict[float, float]) -> None:
    """The two labellers and the head's out-of-fold score on the tickets labelled twice."""
    both = first[["ticket_id", "urgency"]].merge(second[["ticket_id", "urgency"]], on="ticket_id", suffixes=("_a", "_b"))
    pos = pd.Series(np.arange(len(rows)), index=rows["id"].astype(str))
    both = both[both["ticket_id"].isin(pos.index)]
    s = oof[pos[both["ticket_id"]].to_numpy()]
    a, b = (both["urgency_a"] == "high").to_numpy(), (both["urgency_b"] == "high").to_numpy()
    n = len(both)
    kappa = _kappa(a, b)
    print(f"\n{name}: {n} tickets labelled twice; first labeller {int(a.sum())} high, second {int(b.sum())}, "
          f"both {int((a & b).sum())}; high-vs-not kappa {kappa:.3f}")
    print(f"  the second labeller as a flag of the first's highs: recall {(a & b).sum() / max(a.sum(), 1):.3f} "
          f"at {b.mean():.1%} flagged (precision {(a & b).sum() / max(b.sum(), 1):.3f}); "
          f"the first as a flag of the second's: recall {(a & b).sum() / max(b.sum(), 1):.3f} at {a.mean():.1%} flagged")
    for q, t in thresholds.items():
        flag = s >= t
        print(f"  head, CV threshold for {q:.0%} flagged: flags {flag.mean():.1%} of these; recall of the first "
              f"labeller's highs {(flag & a).sum() / max(a.sum(), 1):.3f} ({int((flag & a).sum())}/{int(a.sum())}), of the "
              f"second's {(flag & b).sum() / max(b.sum(), 1):.3f} ({int((flag & b).sum())}/{int(b.sum())})")
    oracle = a + s * 1e-3
    print(f"  a model that reproduces the first labeller (its highs first, then the head's score), judged by the "
          f"second: AUC {roc_auc_score(b, oracle):.3f}; " + " ".join(
              f"recall@{q:.0%} {_recall_at(oracle, b, q):.3f}" for q in (a.mean(), *SHARES))
          + f" (the first share is the first labeller's {a.mean():.1%}); the head itself judged by the "
          f"second: AUC {roc_auc_score(b, s):.3f}, by the first: AUC {roc_auc_score(a, s):.3f}")


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    po = float((a == b).mean())
    pe = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (po - pe) / (1 - pe)


def main() -> None:
    ap = labelled_bench_args(__doc__)
    args = ap.parse_args()
    threadpool_limits(1, "blas")
    rows, oof, scored = shipped_oof(args.model, args.config, args.data)
    high = (rows["urgency"] == "high").to_numpy()
    s, h = oof[scored], high[scored]
    p = float(h.mean())
    auc = roc_auc_score(h, s)
    print(f"{len(rows)} labelled tickets before the frozen month, scored on the {int(scored.sum())} outside the cue "
          f"stratum: {int(h.sum())} high, prevalence {p:.4f}; out-of-fold AUC(high) {auc:.4f}")
    print("\n1. ROC of the shipped head's out-of-fold P(high)\n  flagged   recall(TPR)   FPR    precision")
    for q, tpr, fpr, prec in roc_points(s, h, np.array([.02, .05, .08, .10, .12, .14, .16, .18, .20, .22, .25, .30, .35, .40])):
        print(f"  {q:6.1%}      {tpr:.3f}      {fpr:.3f}    {prec:.3f}")
    print("  recall at " + ", ".join(f"{q:.0%} flagged {_recall_at(s, h, q):.3f} ({int(round(_recall_at(s, h, q) * h.sum()))}/{int(h.sum())})"
                                      for q in SHARES))

    fpr_goal = (GOAL_SHARE - GOAL_RECALL * p) / (1 - p)
    tpr_now = float((s[h] >= np.quantile(s[~h], 1 - fpr_goal)).mean())
    d_goal = stats.norm.ppf(GOAL_RECALL) - stats.norm.ppf(fpr_goal)
    a, b = binormal_fit(s, h)
    a_goal = stats.norm.ppf(GOAL_RECALL) - b * stats.norm.ppf(fpr_goal)
    a1 = stats.norm.ppf(tpr_now) - stats.norm.ppf(fpr_goal)
    shift, auc_shift = shift_needed(s, h)
    need = int(np.ceil(GOAL_RECALL * h.sum()))
    found = int(round(_recall_at(s, h, GOAL_SHARE) * h.sum()))
    print(f"\n2. Recall {GOAL_RECALL:.2f} at <= {GOAL_SHARE:.0%} flagged, prevalence {p:.4f}: FPR must be <= "
          f"{fpr_goal:.4f}; the curve has TPR {tpr_now:.3f} there now")
    print(f"  equal-variance binormal: needs d' {d_goal:.3f} -> AUC {stats.norm.cdf(d_goal / np.sqrt(2)):.4f} "
          f"(the equal-variance curve through the current point (FPR {fpr_goal:.3f}, TPR {tpr_now:.3f}) has d' {a1:.3f}, "
          f"AUC {stats.norm.cdf(a1 / np.sqrt(2)):.4f})")
    print(f"  binormal fitted to the observed curve: a {a:.3f}, slope b {b:.3f} -> AUC {binormal_auc(a, b):.4f} "
          f"(empirical {auc:.4f}); through the goal point with the same slope: a {a_goal:.3f} -> AUC "
          f"{binormal_auc(a_goal, b):.4f}")
    print(f"  empirically: every high's logit score moved up by {shift:.3f} puts {GOAL_RECALL:.0%} of them in the top "
          f"{GOAL_SHARE:.0%}; the moved scores have AUC {auc_shift:.4f}; {need} of {int(h.sum())} highs must be in the top "
          f"{GOAL_SHARE:.0%} ({int(np.floor(GOAL_SHARE * len(s)))} tickets), {found} are now")
    for pp in (0.083, 0.10, 0.12):
        f = (GOAL_SHARE - GOAL_RECALL * pp) / (1 - pp)
        dd = stats.norm.ppf(GOAL_RECALL) - stats.norm.ppf(f)
        ag = stats.norm.ppf(GOAL_RECALL) - b * stats.norm.ppf(f)
        print(f"  at prevalence {pp:.3f}: FPR <= {f:.4f}, equal-variance AUC {stats.norm.cdf(dd / np.sqrt(2)):.4f}, "
              f"observed-slope AUC {binormal_auc(ag, b):.4f}")

    print("\n3. Label agreement against the same yardstick")
    thresholds = {q: float(np.quantile(s, 1 - q)) for q in SHARES}
    labels = Path(__file__).resolve().parent.parent / "labels"
    draw = pd.read_csv(labels / "urgency-sample.csv", usecols=["ticket_id", "month"])
    before = set(draw.loc[draw["month"].astype(str) < "2022-12", "ticket_id"])  # frozen month left out unread
    first = pd.read_csv(labels / "urgency-2022.csv")
    first = first[first["ticket_id"].isin(before)]
    blind = pd.read_csv(labels / "urgency-blind.csv")
    agreement("random 200 of the first draw (rows before 2022-12)", first, blind[blind["ticket_id"].isin(before)],
              rows, oof, thresholds)
    agreement("cue stratum, 100 re-labelled", pd.read_csv(labels / "urgency-2022-cue.csv"),
              pd.read_csv(labels / "urgency-cue-blind.csv"), rows, oof, thresholds)


if __name__ == "__main__":
    main()
