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

    cue = pd.read_csv(REPO / "labels" / "urgency-2022-cue.csv")
    drawn = pd.read_csv(REPO / "labels" / "urgency-sample-2.csv")
    assert len(cue) == len(drawn) == 350 and set(cue["ticket_id"]) == set(drawn["ticket_id"])
    assert not set(cue["ticket_id"]) & set(sample["ticket_id"])  # the second draw left the first out
    assert set(cue["stratum"]) == {"cue"} and (cue["month"] < "2022-12").all()  # never the frozen month
    assert set(cue["urgency"]) <= {"high", "medium", "low"} and cue["reason"].str.len().gt(0).all()
    assert not cue["reason"].str.contains("[ก-๙]").any()

    for name, first, n in (("urgency-blind.csv", labels, 200), ("urgency-cue-blind.csv", cue, 100)):
        blind = pd.read_csv(REPO / "labels" / name)
        assert list(blind.columns) == ["ticket_id", "urgency", "reason"]  # ids, labels, reasons; no text
        assert len(blind) == n and blind["ticket_id"].is_unique
        assert set(blind["ticket_id"]) <= set(first["ticket_id"])
        assert set(blind["urgency"]) <= {"high", "medium", "low"} and blind["reason"].str.len().gt(0).all()
        assert not blind["reason"].str.contains("[ก-๙]").any()
    # the cue re-label is exactly the recorded draw (seed 20261205 over the second draw's ids)
    cue_blind = pd.read_csv(REPO / "labels" / "urgency-cue-blind.csv")
    assert list(cue_blind["ticket_id"]) == urgency_labels.draw_blind(REPO / "labels" / "urgency-sample-2.csv", 100)


def test_second_round_draws_cue_stratum_outside_first_draw(tiny_data, tmp_path):
    first = tmp_path / "sample.csv"  # a first draw that took wire tickets 0, 3, ..., 87 of 2022-10
    taken = [f"2022-10-{i}" for i in range(0, 90, 3)]
    pd.DataFrame({"ticket_id": taken, "month": "2022-10", "stratum": "random", "pool": 300,
                  "drawn": 30}).to_csv(first, index=False)
    second = tmp_path / "sample2.csv"
    assert sample_urgency.main(["--data", str(tiny_data), "--round", "2", "--exclude", str(first),
                                "--cue-per-month", "7", "--before", "2022-11", "--out", str(second),
                                "--texts", str(tmp_path / "t2"), "--chunks", "2"]) == 0
    s = pd.read_csv(second)
    assert set(s["stratum"]) == {"cue"} and s["ticket_id"].is_unique
    assert set(s["month"]) == {"2022-10"}  # --before leaves 2022-11 (the frozen month there) out
    assert len(s) == 7 and (s["drawn"] == 7).all()
    assert not set(s["ticket_id"]) & set(taken)  # never drawn twice
    # only texts that match a danger cue of the lexicon (the fixture's wire texts: every third ticket)
    assert all(int(t.split("-")[-1]) % 3 == 0 for t in s["ticket_id"])
    assert (s["pool"] == 100 - 30).all()  # 100 wire texts in 2022-10, less the 30 drawn before
    shown = sum(len(pd.read_csv(c, sep="\t")) for c in sorted((tmp_path / "t2").glob("chunk*.tsv")))
    assert shown == len(s)


def test_second_round_without_matches_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(SystemExit, match="no ticket matches"):
        sample_urgency.main(["--data", str(tiny_data), "--round", "2", "--before", "2022-01",
                             "--out", str(tmp_path / "s.csv")])


def test_blind_draw_reads_ids_only_is_seeded_and_writes_texts(tiny_data, tmp_path):
    sample = tmp_path / "s.csv"  # a draw file; the labels of these rows are never read
    ids = [f"2022-10-{i}" for i in range(0, 60, 3)]
    pd.DataFrame({"ticket_id": ids, "month": "2022-10", "stratum": "cue", "pool": 100,
                  "drawn": 20}).to_csv(sample, index=False)
    a = urgency_labels.draw_blind(sample, 5, seed=7)
    assert a == urgency_labels.draw_blind(sample, 5, seed=7) and len(set(a)) == 5 and set(a) <= set(ids)
    assert a != urgency_labels.draw_blind(sample, 5, seed=8)
    assert a == sorted(a, key=ids.index)  # in the draw file's order
    with pytest.raises(SystemExit, match="cannot draw"):
        urgency_labels.draw_blind(sample, 21)

    out = tmp_path / "texts"
    assert urgency_labels.main(["blind", "--sample", str(sample), "--n", "5", "--seed", "7",
                                "--data", str(tiny_data), "--texts", str(out)]) == 0
    shown = pd.read_csv(out / "blind.tsv", sep="\t")
    assert list(shown["ticket_id"]) == a
    assert shown["comment"].str.contains("สายไฟ").all()  # the tickets' real texts from the data folder

    stray = tmp_path / "stray.csv"
    pd.DataFrame({"ticket_id": ["nope"]}).to_csv(stray, index=False)
    with pytest.raises(SystemExit, match="not in"):
        urgency_labels.main(["blind", "--sample", str(stray), "--n", "1", "--data", str(tiny_data),
                             "--texts", str(tmp_path / "t2")])
