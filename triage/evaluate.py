"""Metrics and reports: per-label scores, confusion summaries, calibration, worst errors.

Pure functions over arrays and lists; the Markdown report and its plots are built from the
metrics dict, so the JSON and the Markdown never disagree.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from triage.text import mask_personal


def multilabel_metrics(Y: np.ndarray, D: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Per-label precision/recall/F1/support and micro/macro F1 over labels present in Y."""
    present = Y.sum(axis=0) > 0
    p, r, f, s = precision_recall_fscore_support(Y, D, average=None, zero_division=0)
    per_label = {
        lab: {"precision": round(float(p[k]), 4), "recall": round(float(r[k]), 4), "f1": round(float(f[k]), 4),
              "support": int(s[k]), "predicted": int(D[:, k].sum())}
        for k, lab in enumerate(labels)
    }
    return {
        "micro_f1": round(float(f1_score(Y[:, present], D[:, present], average="micro", zero_division=0)), 4),
        "macro_f1": round(float(f1_score(Y[:, present], D[:, present], average="macro", zero_division=0)), 4),
        "labels_scored": int(present.sum()),
        "rows": len(Y),
        "per_label": per_label,
    }


def label_confusions(Y: np.ndarray, D: np.ndarray, labels: list[str], top: int = 10) -> list[dict[str, Any]]:
    """The most frequent (true label missed -> wrong label predicted instead) pairs."""
    counts: dict[tuple[str, str], int] = {}
    for y, d in zip(Y.astype(bool), D.astype(bool)):
        missed, extra = np.flatnonzero(y & ~d), np.flatnonzero(d & ~y)
        for m in missed:
            for e in extra:
                key = (labels[m], labels[e])
                counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [{"true": t, "predicted": p, "count": n} for (t, p), n in ranked]


def calibration(Y: np.ndarray, P: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability of label probabilities: per bin, mean predicted vs observed rate, and the ECE."""
    y, p = Y.ravel().astype(float), P.ravel()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.sum() == 0:
            continue
        mean_p, rate = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.mean() * abs(mean_p - rate)
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(mask.sum()),
                     "mean_predicted": round(mean_p, 4), "observed": round(rate, 4)})
    return {"ece": round(float(ece), 4), "bins": rows}


def worst_errors(texts: list[str], Y: np.ndarray, P: np.ndarray, D: np.ndarray, labels: list[str],
                 top: int = 15) -> list[dict[str, Any]]:
    """Test rows whose wrong decision was most confident; text masked and cut for the report."""
    wrong_conf = np.where(D.astype(bool) & ~Y.astype(bool), P, 0).max(axis=1)
    order = np.argsort(-wrong_conf)[:top]
    return [
        {"text": mask_personal(texts[i])[:160], "true": [labels[k] for k in np.flatnonzero(Y[i])],
         "predicted": [labels[k] for k in np.flatnonzero(D[i])], "confidence": round(float(wrong_conf[i]), 3)}
        for i in order if wrong_conf[i] > 0
    ]


def single_label_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class scores and confusion matrix for a single-label head."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    matrix = {t: {q: 0 for q in labels} for t in labels}
    for t, q in zip(y_true, y_pred):
        if t in matrix and q in matrix[t]:
            matrix[t][q] += 1
    return {
        "accuracy": round(float(np.mean(np.array(y_true) == np.array(y_pred))), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 4),
        "per_label": {lab: {"precision": round(float(p[k]), 4), "recall": round(float(r[k]), 4),
                            "f1": round(float(f[k]), 4), "support": int(s[k])} for k, lab in enumerate(labels)},
        "confusion": matrix,
        "rows": len(y_true),
    }


def _plot_png(draw: Any) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def plots(metrics: dict[str, Any]) -> dict[str, bytes]:
    """PNG plots for the report: per-label F1 and topic calibration."""
    out: dict[str, bytes] = {}
    topic = metrics.get("topic", {}).get("test")
    if topic:
        per = sorted(topic["per_label"].items(), key=lambda kv: -kv[1]["support"])
        per = [(k, v) for k, v in per if v["support"] > 0]

        def f1_bars(ax: Any) -> None:
            ax.bar(range(len(per)), [v["f1"] for _, v in per], color="#3a7")
            ax.set_xticks(range(len(per)))
            ax.set_xticklabels([f"T{i}" for i in range(len(per))], fontsize=7)
            ax.set_ylim(0, 1)
            ax.set_ylabel("F1 on test")
            ax.set_title("Topic F1 per label, by support (T-numbers: see table)")

        out["topic_f1.png"] = _plot_png(f1_bars)
    cal = metrics.get("topic", {}).get("calibration")
    if cal:

        def reliability(ax: Any) -> None:
            xs = [b["mean_predicted"] for b in cal["bins"]]
            ys = [b["observed"] for b in cal["bins"]]
            ax.plot([0, 1], [0, 1], "--", color="grey")
            ax.plot(xs, ys, "o-", color="#37a")
            ax.set_xlabel("predicted probability")
            ax.set_ylabel("observed frequency")
            ax.set_title(f"Topic calibration on test (ECE {cal['ece']})")

        out["topic_calibration.png"] = _plot_png(reliability)
    return out


def _agency_section(agency: dict[str, Any]) -> list[str]:
    """Issue 14 §6: later forwards and ordinary tickets, mixes at 2/5/8%, the assigned month, the replay."""
    h = agency["held_out"]
    if "mix" not in agency.get("router", {}):  # a report of issue 4's metrics
        return ["## Agency routing (held-out, time-ordered)", "", "```", str(agency.get("summary", "")), "```", ""]
    intro = (f"{h['forwards']} later forwards ({h['forwards_from']} .. {h['forwards_to']}) and {h['ordinary']} ordinary "
             f"Bangkok tickets ({h['ordinary_split']}; {h.get('ordinary_filter', '')}). The primary agency moves away from "
             f"the district office only when the calibrated probability of another kind reaches {agency['move_threshold']} "
             f"(break-even at a {agency.get('decision_rate', agency['forward_rate']):.0%} forward rate: a wrong move costs as much as a "
             f"missed forward); calibration {agency['calibration']} fitted on "
             f"validation ({agency.get('calibrate_on', 'forwards')}) at a {agency['forward_rate']:.0%} forward rate. Top-3: the right kind among the first three "
             f"suggestions (agencies, then candidates). Mix r: r x forwards right by kind + (1 - r) x ordinary kept.")
    header = ("| routing | forwards: right kind | right kind in top 3 | exact agency | ordinary kept | mix 2% | mix 5% | mix 8% "
              "| review (forwards / ordinary) |")
    lines = ["## Agency routing (held-out, time-ordered)", "", intro, "", header, "|---|---|---|---|---|---|---|---|---|"]
    ways = (("router", "router (table + learned)"), ("table_only", "table alone"),
            ("status_quo", "status quo: always the district office"))
    for name, label in ways:
        m = agency[name]
        mix = m["mix"]
        lines.append(f"| {label} | {m['forwarded_kind']} | {m['forwarded_top3_kind']} | {m['forwarded_exact']} | "
                     f"{m['ordinary_kept']} | {mix['2%']} | {mix['5%']} | {mix['8%']} | "
                     f"{m['forwarded_review']} / {m['ordinary_review']} |")
    a = agency.get("assigned")
    if a:
        fit = agency.get("assigned_fit") or {}
        used = (f"its earliest {fit.get('training_rows', 0)} tickets were training rows and the next "
                f"{fit.get('calibration_rows', 0)} validation; these later ones are a frozen test that no choice looked at, "
                "later than everything fitted on (the held-out forwards above are earlier than the assigned month's "
                "training rows)"
                if fit.get("share") else "a test, never fitted on")
        lines += ["", (f"Later month with the organisations really assigned ({a['from']} .. {a['to']}, {a['tickets']} tickets, "
                       f"{a['with_other_kind']} involving another kind of agency; {used}). Agreement 'strict': "
                       "right at the district office only when no other kind was assigned, else right when the first agency is "
                       "of an assigned other kind; 'any': the first agency's kind is one of those assigned. 'Kept': tickets "
                       "assigned only to the district office that stay there; 'other kind first / in top 3': tickets with "
                       "another kind assigned whose first agency / first three suggestions are of that kind."), "",
                  "| routing | agreement strict | agreement any | kept | other kind first | other kind in top 3 | moved | review "
                  "| district read from text |", "|---|---|---|---|---|---|---|---|---|"]
        rows = [("with_district", "router, intake district", a.get("with_district")),
                ("without_district", "router, no district sent", a.get("without_district")),
                ("table_only", "table alone, intake district", a.get("table_only"))]
        for _name, label, m in rows:
            if not m:
                continue
            lines.append(f"| {label} | {m['agreement']['strict']} | {m['agreement']['any']} | {m.get('office_only_kept', '')} | "
                         f"{m.get('other_kind_first', '')} | {m.get('other_kind_top3', '')} | {m['moved']} | {m['review']} | "
                         f"{m['district_from_text']} |")
        sq = a["status_quo"]["agreement"]
        lines.append(f"| status quo: always the district office | {sq['strict']} | {sq['any']} | 1.0 | 0 | 0 | 0 | - | - |")
    v = agency.get("validation")
    if v:
        vr, va = v["router"], v.get("assigned")
        lines += ["", (f"Validation (what the settings were chosen on: the model fitted before the validation part, with its "
                       f"calibration): forwards right by kind {vr['forwarded_kind']}, right kind in top 3 {vr['forwarded_top3_kind']}, "
                       f"ordinary kept {vr['ordinary_kept']}, mix 2/5/8% {vr['mix']['2%']} / {vr['mix']['5%']} / {vr['mix']['8%']}"
                       + (f"; assigned month {va['from']} .. {va['to']}: agreement strict "
                          f"{va['with_district']['agreement']['strict']} (always the district office "
                          f"{va['status_quo']['agreement']['strict']})" if va else "") + ".")]
    r = agency.get("replay")
    if r:
        lines += ["", (f"Learning from reviewers (replay in time order: {r['forwards']} later forwards with {r['ordinary']} "
                       f"ordinary tickets between them; every wrong primary kind is corrected and remembered at once, "
                       f"memory strength {r['strength']}, min similarity {r['min_sim']}): forwards by kind {r['by_kind']} "
                       f"(without memory {r['by_kind_without_memory']}), ordinary kept {r['ordinary_kept']} "
                       f"(without {r['ordinary_kept_without_memory']})."), "",
                  "| next forwards | corrections seen | by kind | without memory | ordinary kept | without memory |",
                  "|---|---|---|---|---|---|"]
        for c in r["curve"]:
            lines.append(f"| {c['forwards']} | {c['corrections_seen']} | {c['by_kind']} | {c['by_kind_without_memory']} | "
                         f"{c['ordinary_kept']} | {c['ordinary_kept_without_memory']} |")
    lines += ["", "Right kind per true kind (router):", "", "| kind | forwards | right kind | predicted kinds |", "|---|---|---|---|"]
    for kind, row in agency["router"]["per_kind"].items():
        lines.append(f"| {kind} | {row['n']} | {row['recall']} | {row['predicted']} |")
    lines += ["", f"Trained on: {agency.get('trained_on', {})}; corrections: {agency.get('corrections', {})}.", ""]
    return lines


def markdown_report(metrics: dict[str, Any]) -> str:
    """A human-readable report of a training run's held-out metrics."""
    lines = [f"# Model {metrics['version']}", "", f"Dataset `{metrics['dataset']}`, split: {metrics['split']}.", ""]
    topic = metrics.get("topic")
    if topic:
        t = topic["test"]
        lines += ["## Topic (held-out test)", "",
                  f"micro-F1 **{t['micro_f1']}**, macro-F1 **{t['macro_f1']}** over {t['labels_scored']} labels "
                  f"present in {t['rows']} test rows; calibration ECE {topic['calibration']['ece']}.", ""]
        if "baseline" in topic:
            b = topic["baseline"]
            lines += [f"Plain baseline on the same split ({b['name']}): micro-F1 {b['micro_f1']}, macro-F1 {b['macro_f1']}.", ""]
        lines += ["![F1 per label](topic_f1.png) ![calibration](topic_calibration.png)", "",
                  "| # | label | precision | recall | F1 | support | predicted | threshold |", "|---|---|---|---|---|---|---|---|"]
        per = sorted(t["per_label"].items(), key=lambda kv: -kv[1]["support"])
        for i, (lab, v) in enumerate([kv for kv in per if kv[1]["support"] > 0]):
            lines.append(f"| T{i} | {lab} | {v['precision']} | {v['recall']} | {v['f1']} | {v['support']} | "
                         f"{v['predicted']} | {topic['thresholds'].get(lab, '')} |")
        lines += ["", "### Most frequent confusions (true label missed, other label predicted)", ""]
        lines += [f"- {c['true']} -> {c['predicted']}: {c['count']}" for c in topic["confusions"]]
        lines += ["", "### Most confident errors (text masked)", ""]
        lines += [f"- `{e['text']}` true {e['true']}, predicted {e['predicted']} ({e['confidence']})" for e in topic["worst_errors"]]
        lines.append("")
    urgency = metrics.get("urgency")
    if urgency:
        rule = (f"the top {urgency['high_share']:.0%} of out-of-fold scores flagged" if urgency.get("high_share")
                else f"a missed high costs {urgency.get('high_miss_cost')} false alarms")
        lines += ["## Urgency", "", f"high threshold {urgency.get('high_threshold')} ({rule}).", "",
                  "| evaluation | rows | recall(high) | precision(high) | flagged high | macro-F1 |", "|---|---|---|---|---|---|"]
        for name in ("cross_validated", "cross_validated_random_reweighted", "time_ordered", "frozen_test",
                     "frozen_test_random_reweighted"):
            u = urgency.get(name)
            if u:
                lines.append(f"| {name} | {u['rows']} | {u['high_recall']} | {u['high_precision']} | "
                             f"{u['flagged_high_share']} | {u['macro_f1']} |")
        lines.append("")
    agency = metrics.get("agency")
    if agency:
        lines += _agency_section(agency)
    stages = metrics.get("stage_seconds")
    if stages:
        cpu = metrics.get("stage_cpu_seconds", {})
        load = metrics.get("load_average") or {}
        lines += ["## Training time", "",
                  f"{metrics.get('train_seconds')} s wall, {metrics.get('train_cpu_seconds', '?')} CPU s in the stages before saving "
                  f"(this process, its worker processes and the agency process beside the urgency stages); load "
                  f"average (1, 5, 15 min) {load.get('start')} at the start, {load.get('end')} at the end.", "",
                  "| stage | wall s | CPU s |", "|---|---|---|"]
        lines += [f"| {name} | {sec} | {cpu.get(name, '')} |" for name, sec in stages.items()]
        lines.append("")
    lines += ["## Data", "", "```", metrics.get("data_report", ""), "```", ""]
    return "\n".join(lines)
