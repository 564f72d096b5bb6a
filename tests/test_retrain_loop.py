"""The whole loop: triage -> corrections -> export -> retrain -> compare -> promote -> reload."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from api_helpers import H_ADMIN, H_INTAKE, H_REVIEWER, settings_for
from fastapi.testclient import TestClient

from triage import corrections, registry
from triage.app import create_app
from triage.data import load_config
from triage.promote import compare_and_promote
from triage.testing import REPO
from triage.training import TrainOptions, train


def test_correct_export_retrain_promote_reload(tmp_path: Path, traffy_slice: Path, small_model_dir: Path, capsys):
    models = tmp_path / "models"
    shutil.copytree(small_model_dir, models, symlinks=True)
    data = tmp_path / "data"
    old_version = registry.read_metadata(models / "current")["version"]
    month = pd.read_parquet(sorted((traffy_slice / "traffy").glob("*.parquet"))[2])
    tickets = month[month["type_labels"].fillna("").str.len() > 0].head(6)

    with TestClient(create_app(settings_for(data, models))) as c:
        labels = c.get("/v1/model", headers=H_ADMIN).json()["labels"]["topic"]
        corrected = {}
        for _, t in tickets.iterrows():
            out = c.post("/v1/triage", json={"text": t["comment"] + " โทร 081-234-5678", "external_id": t["ticket_id"],
                                             "district": t["district"]}, headers=H_INTAKE).json()
            truth = [lab for lab in t["type_labels"].split("|") if lab in labels] or [labels[0]]
            body = {"reviewer": "rev-1", "reason": "checked", "topics": truth, "urgency": "medium"}
            if not corrected:  # the first one also goes to another agency
                body["agencies"] = ["การไฟฟ้านครหลวง เขตบางเขน"]
            r = c.post(f"/v1/cases/{out['case_id']}/corrections", headers=H_REVIEWER, json=body)
            assert r.status_code == 200
            corrected[t["ticket_id"]] = truth

        out_file = tmp_path / "corrections.csv"
        assert corrections.main(["--database", f"sqlite:///{data / 'triage.db'}", "--out", str(out_file)]) == 0
        assert "wrote 6 corrected cases" in capsys.readouterr().out
        exported = out_file.read_text(encoding="utf-8")
        assert "081-234-5678" not in exported and "[phone]" in exported
        frame = corrections.read_corrections(out_file)
        assert dict(zip(frame["id"], frame["topic"])) == corrected
        assert set(frame["urgency"]) == {"medium"}
        assert sorted(frame["agency"])[-1] == "การไฟฟ้านครหลวง เขตบางเขน"

        config = load_config(REPO / "configs" / "traffy.toml", traffy_slice)
        path, metrics = train(config, models, TrainOptions(corrections=frame), log=lambda _m: None, make_current=False)
        assert metrics["agency"]["corrections"]["used"] == 1  # the agency correction reached the agency model
        assert registry.read_metadata(models / "current")["version"] == old_version
        new_version = path.name

        refused = compare_and_promote(models, path, config, frame, tolerance=-1.0)  # must be 1.0 better
        assert not refused.promoted and refused.current is not None
        assert registry.read_metadata(models / "current")["version"] == old_version
        printed = capsys.readouterr().out
        assert "current" in printed and "candidate" in printed and "kept" in printed

        result = compare_and_promote(models, path, config, frame, tolerance=0.05)
        assert result.promoted and result.rows > 0
        assert abs(result.candidate["micro_f1"] - result.current["micro_f1"]) < 0.05
        assert registry.read_metadata(models / "current")["version"] == new_version

        # the running service still serves the old model until it is told to reload
        assert c.get("/v1/model", headers=H_REVIEWER).json()["version"] == old_version
        r = c.post("/v1/admin/reload", headers=H_ADMIN)
        assert r.status_code == 200 and r.json()["version"] == new_version
        again = c.post("/v1/triage", json={"text": tickets.iloc[0]["comment"]}, headers=H_INTAKE).json()
        assert again["model_version"] == new_version
        # cases keep the version that triaged them
        first = c.get("/v1/cases", params={"limit": 100}, headers=H_REVIEWER).json()["items"][-1]
        assert first["model_version"] == old_version


def test_train_py_takes_corrections_and_tolerance(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"], capture_output=True, text=True,
                       check=True, cwd=REPO)
    assert "--corrections" in r.stdout and "--tolerance" in r.stdout
    (tmp_path / "c.csv").write_text("id,text,topic,urgency,agency,district,corrected_at\n"
                                    "t1,ไฟดับ [phone],ไฟฟ้า|ถนน,high,,บางรัก,2026-01-01\n", encoding="utf-8")
    frame = corrections.read_corrections(tmp_path / "c.csv")
    assert frame["topic"].tolist() == [["ไฟฟ้า", "ถนน"]] and frame["time"].tolist() == [""]
    assert frame["urgency"].tolist() == ["high"]
