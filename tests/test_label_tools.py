"""The urgency labelling tools on small data made here: the draw and the merge/agreement checks."""

from __future__ import annotations

import pandas as pd
import pytest

from triage.tools import sample_urgency, urgency_labels


@pytest.fixture
def tiny_data(tmp_path):
    rows = []
    for m in ("2022-10", "2022-11"):
        for i in range(300):
            danger = i % 3 == 0
            rows.append({
                "ticket_id": f"{m}-{i}", "timestamp": f"{m}-05 10:00:00",
                "comment": (f"สายไฟห้อยต่ำ อันตราย จุดที่ {i} {m}" if danger else f"ขยะไม่มีคนเก็บ ซอย {i} {m}"),
                "type_labels": "สายไฟ" if danger else "ความสะอาด",
            })
    rows.append({"ticket_id": "dup", "timestamp": "2022-11-06", "comment": rows[0]["comment"], "type_labels": ""})
    rows.append({"ticket_id": "empty", "timestamp": "2022-11-06", "comment": "  ", "type_labels": ""})
    (tmp_path / "traffy").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "traffy" / "traffy-2022-10.parquet")
    (tmp_path / "urgency").mkdir()
    pd.DataFrame([{"ticket_id": "2022-10-1", "urgency": "medium", "reason": "x"}]).to_csv(
        tmp_path / "urgency" / "traffy-urgency.csv", index=False)
    return tmp_path


def test_draw_covers_months_and_records_inclusion(tiny_data, tmp_path):
    out = tmp_path / "sample.csv"
    assert sample_urgency.main(["--data", str(tiny_data), "--out", str(out), "--texts", str(tmp_path / "t")]) == 0
    s = pd.read_csv(out)
    assert s["ticket_id"].is_unique
    assert "2022-10-1" not in set(s["ticket_id"])  # already labelled
    assert not {"dup", "empty"} & set(s["ticket_id"])  # duplicate text, empty text
    assert set(s["month"]) == {"2022-10", "2022-11"}
    assert {"random", "enriched"} <= set(s["stratum"])
    assert (s["drawn"] <= s["pool"]).all()
    chunks = sorted((tmp_path / "t").glob("chunk*.tsv"))
    shown = sum(len(pd.read_csv(c, sep="\t")) for c in chunks)
    assert shown == len(s)


def test_merge_refuses_bad_rows_and_agreement_is_kappa(tmp_path):
    sample = tmp_path / "s.csv"
    pd.DataFrame({"ticket_id": ["a", "b", "c", "d"], "month": "2022-11", "stratum": "random",
                  "pool": 10, "drawn": 4}).to_csv(sample, index=False)
    good = tmp_path / "l.csv"
    pd.DataFrame({"ticket_id": ["a", "b", "c", "d"], "urgency": ["high", "medium", "low", "medium"],
                  "reason": ["wire down", "pothole", "question", "dark alley"]}).to_csv(good, index=False)
    merged = urgency_labels.merge(sample, [good], tmp_path / "m.csv")
    assert list(merged.columns) == ["ticket_id", "month", "stratum", "pool", "drawn", "urgency", "reason"]

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"ticket_id": ["a"], "urgency": ["urgent"], "reason": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(SystemExit, match="urgency not in"):
        urgency_labels.merge(sample, [bad], tmp_path / "m2.csv")
    stray = tmp_path / "stray.csv"
    pd.DataFrame({"ticket_id": ["zz"], "urgency": ["low"], "reason": ["x"]}).to_csv(stray, index=False)
    with pytest.raises(SystemExit, match="not in the sample"):
        urgency_labels.merge(sample, [stray], tmp_path / "m3.csv")

    second = tmp_path / "second.csv"
    pd.DataFrame({"ticket_id": ["a", "b", "c", "d"], "urgency": ["high", "medium", "low", "low"],
                  "reason": ["r"] * 4}).to_csv(second, index=False)
    agree = urgency_labels.agreement(tmp_path / "m.csv", second)
    assert agree["n"] == 4
    assert 0.5 < agree["kappa"] < 1.0


def test_committed_labels_are_consistent():
    from triage.testing import REPO

    labels = pd.read_csv(REPO / "labels" / "urgency-2022.csv")
    sample = pd.read_csv(REPO / "labels" / "urgency-sample.csv")
    assert len(labels) >= 3000 and labels["ticket_id"].is_unique
    assert set(labels["ticket_id"]) <= set(sample["ticket_id"])
    assert set(labels["urgency"]) == {"high", "medium", "low"}
    assert labels["reason"].str.len().gt(0).all()
    assert not labels["reason"].str.contains("[ก-๙]").any()  # reasons, never complaint text
