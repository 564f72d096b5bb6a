"""train.py end to end with column options instead of a config (multi-label and single-label)."""

import json
import subprocess
import sys

import pandas as pd

from triage import registry
from triage.testing import REPO


def _slice_csv(traffy_slice, path, single=False):
    frame = pd.concat(pd.read_parquet(p) for p in sorted((traffy_slice / "traffy").glob("*.parquet")))
    frame = frame[frame["type_labels"].fillna("").str.len() > 0].head(1500)
    if single:
        frame = frame.assign(type_labels=frame["type_labels"].str.split("|").str[0])
    frame[["ticket_id", "comment", "type_labels"]].to_csv(path, index=False)


def _train(tmp_path, csv, *extra):
    cmd = [sys.executable, str(REPO / "train.py"), "--input", str(csv), "--text-column", "comment",
           "--topic-column", "type_labels", "--out", str(tmp_path / "models"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_train_from_column_options_multilabel(traffy_slice, tmp_path):
    _slice_csv(traffy_slice, tmp_path / "c.csv")
    res = _train(tmp_path, tmp_path / "c.csv", "--topic-separator", "|", "--id-column", "ticket_id")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "micro-F1" in res.stdout and "macro-F1" in res.stdout
    model, meta = registry.load(tmp_path / "models" / "current")
    assert "ถนน" in meta["labels"]["topic"] and meta["labels"]["urgency"] == []
    metrics = json.loads((registry.resolve(tmp_path / "models" / "current") / "metrics.json").read_text())
    assert metrics["topic"]["test"]["micro_f1"] > 0.5
    assert model.predict(["ถนนเป็นหลุมเป็นบ่อ"])[0]["topics"]


def test_train_single_label_and_bad_column(traffy_slice, tmp_path):
    _slice_csv(traffy_slice, tmp_path / "s.csv", single=True)
    res = _train(tmp_path, tmp_path / "s.csv")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "single-label: accuracy" in res.stdout
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "--input", str(tmp_path / "s.csv"),
                          "--text-column", "nope", "--topic-column", "type_labels", "--out", str(tmp_path / "m2")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 2 and "nope" in res.stderr and "Traceback" not in res.stderr
