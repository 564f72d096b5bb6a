"""Issue 14 item 4 over HTTP: reviewers' agency corrections are followed at the next reload, no retrain.

The real app (TestClient), the real SQLite store, the model trained on the real slice: reviewers
correct a kind of complaint (cars parked across a soi) from the district office to the police
station, the admin reloads, and the next such complaint goes to the police station first.
"""

from __future__ import annotations

from pathlib import Path

from api_helpers import H_ADMIN, H_INTAKE, H_REVIEWER, settings_for
from fastapi.testclient import TestClient

from triage.app import create_app
from triage.routing import Router

DISTRICT = "บางซื่อ"
PARKED = [
    "มีรถยนต์มาจอดขวางปากซอยทุกวัน รถเข้าออกซอยไม่ได้ {}",
    "รถกระบะจอดขวางปากซอยทั้งวัน เข้าออกซอยไม่ได้เลย {}",
    "รถยนต์จอดขวางหน้าปากซอย ทำให้รถในซอยออกไม่ได้ {}",
]
SUFFIX = ["ช่วยด้วยครับ", "รบกวนตรวจสอบ", "เดือดร้อนมาก", "ขอให้มาดูแล", "ทุกเช้า", "ทุกเย็น", "ตลอดสัปดาห์", "มาหลายวันแล้ว"]


def _triage(c: TestClient, text: str) -> dict:
    r = c.post("/v1/triage", json={"text": text, "district": DISTRICT}, headers=H_INTAKE)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_reviewers_agency_corrections_are_followed_after_a_reload(tmp_path: Path, small_model_dir: Path) -> None:
    police = Router.load().resolve("police", DISTRICT)[0]
    new_case = "รถยนต์จอดขวางปากซอยอีกแล้ว รถเข้าออกซอยไม่ได้ เดือดร้อนทุกวัน"
    with TestClient(create_app(settings_for(tmp_path, small_model_dir)), raise_server_exceptions=False) as c:
        before = _triage(c, new_case)
        assert before["agencies"][0] != police, before["agencies"]  # the model alone keeps it at the district office
        texts = [p.format(s) for p in PARKED for s in SUFFIX]  # 24 corrections of one kind of complaint
        for text in texts:
            case = _triage(c, text)
            r = c.post(f"/v1/cases/{case['case_id']}/corrections", headers=H_REVIEWER,
                       json={"reviewer": "somsri", "reason": "ที่จอดรถผิดกฎหมาย: สน.", "agencies": [police]})
            assert r.status_code == 200, r.text
        # not before the reload: the served model is swapped whole, never under a request
        assert _triage(c, new_case)["agencies"][0] != police
        assert c.post("/v1/admin/reload", headers=H_ADMIN).status_code == 200
        after = _triage(c, new_case)
        assert after["agencies"][0] == police, after["agency_explanation"]
        # an unrelated complaint is not pulled along
        light = _triage(c, "ถนนในซอยเป็นหลุมเป็นบ่อ น้ำขังเวลาฝนตก รถจักรยานยนต์ล้มบ่อย")
        assert light["agencies"][0] != police
