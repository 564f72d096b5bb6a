"""Agency routing: directory and table validation, hand-written Thai cases, the learned model loop."""

from __future__ import annotations

import copy
import pickle
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from api_helpers import require_shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.agency import (
    assigned_agreement,
    assigned_kinds,
    assigned_primary,
    correction_rows,
    decision_threshold,
    fit_agency_model,
    length_matched_sample,
    load_assigned,
    mixes,
    separation,
    source_words,
    split_assigned,
    strip_intake,
)
from triage.errors import ConfigError, DataError
from triage.prediction import predict
from triage.routing import (
    DIRECTORY_PATH,
    TABLE_PATH,
    Directory,
    Places,
    Router,
    RoutingTable,
)
from triage.testing import shared_data_dir
from triage.text import normalize
from triage.tools.build_directory import build_directory

RAW_DIRECTORY = tomllib.loads(DIRECTORY_PATH.read_text(encoding="utf-8"))
RAW_TABLE = tomllib.loads(TABLE_PATH.read_text(encoding="utf-8"))
MEA = "การไฟฟ้านครหลวง"


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def route(router: Router, text: str, district: str | None, topics: list[str] | None = None,
          learned: Any = None) -> dict[str, Any]:
    topics = topics or []
    prediction = {"topics": topics, "topic_scores": {t: 0.8 for t in topics}}
    return router.route(text, normalize(text), district, prediction, learned)


# ---- directory ----

def test_shipped_directory_loads_with_every_bangkok_district_office(router: Router) -> None:
    d = router.directory
    assert len(d.bangkok_districts) == 50
    for district in d.bangkok_districts:
        assert router.resolve("district_office", district) == [f"สำนักงานเขต{district}"]
    assert {"สำนักงานเขตจตุจักร", "สน.บางซื่อ", f"{MEA} เขตบางเขน", "สำนักการระบายน้ำ กทม."} <= router.agency_names
    assert d.canonical("เขตบางนา") == "สำนักงานเขตบางนา"  # the data's spelling is an alias


def test_escalation_goes_up_to_the_root(router: Router) -> None:
    assert router.directory.escalation("สน.บางซื่อ") == ["กองบัญชาการตำรวจนครบาล (บช.น.)",
                                                       "สำนักงานตำรวจแห่งชาติ (Royal Thai Police)"]
    assert router.directory.escalation("ฝ่ายโยธา เขตบางนา") == ["สำนักงานเขตบางนา", "กรุงเทพมหานคร"]


def _directory(**changes: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_DIRECTORY)
    for name, spec in changes.items():
        raw["agencies"][name] = spec
    return raw


def test_directory_rejects_an_unknown_parent() -> None:
    raw = _directory(**{"สน.ทดสอบ": {"kind": "police", "parent": "กองที่ไม่มีจริง"}})
    with pytest.raises(ConfigError, match="'สน.ทดสอบ' has parent 'กองที่ไม่มีจริง', which is not in the directory"):
        Directory.from_dict(raw)


def test_directory_rejects_a_loop_in_parents() -> None:
    raw = _directory(**{"หน่วย ก": {"kind": "other", "parent": "หน่วย ข"}, "หน่วย ข": {"kind": "other", "parent": "หน่วย ก"}})
    with pytest.raises(ConfigError, match="loop in parents: หน่วย . -> หน่วย . -> หน่วย ."):
        Directory.from_dict(raw)


def test_directory_rejects_a_district_with_no_office() -> None:
    raw = copy.deepcopy(RAW_DIRECTORY)
    del raw["agencies"]["สำนักงานเขตบางนา"]
    for spec in raw["agencies"].values():  # its sections name it as parent
        if spec.get("parent") == "สำนักงานเขตบางนา":
            spec["parent"] = "กรุงเทพมหานคร"
    with pytest.raises(ConfigError, match="district 'บางนา' has no district office"):
        Directory.from_dict(raw)


def test_directory_rejects_missing_kind_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'หน่วย ก' has no kind"):
        Directory.from_dict(_directory(**{"หน่วย ก": {"parent": "กรุงเทพมหานคร"}}))
    with pytest.raises(ConfigError, match="unknown keys \\['phone'\\]"):
        Directory.from_dict(_directory(**{"หน่วย ก": {"kind": "other", "phone": "1555"}}))


# ---- routing table ----

def _table(router: Router, raw: dict[str, Any]) -> RoutingTable:
    return RoutingTable.from_dict(raw, router.directory)


def test_table_rejects_an_unknown_agency(router: Router) -> None:
    raw = copy.deepcopy(RAW_TABLE)
    raw["rules"].append({"agency": "สำนักงานที่ไม่มีจริง", "phrases": ["x"]})
    with pytest.raises(ConfigError, match="agency 'สำนักงานที่ไม่มีจริง' is not in the directory"):
        _table(router, raw)
    raw = copy.deepcopy(RAW_TABLE)
    raw["kinds"]["telecom"]["agency"] = "กสทช ปลอม"
    with pytest.raises(ConfigError, match="kind 'telecom': agency 'กสทช ปลอม' is not in the directory"):
        _table(router, raw)


def test_table_rejects_unknown_kinds_bad_patterns_and_empty_rules(router: Router) -> None:
    raw = copy.deepcopy(RAW_TABLE)
    raw["rules"].append({"kind": "astrology", "phrases": ["ดวง"]})
    with pytest.raises(ConfigError, match="kind 'astrology' is not one of: "):
        _table(router, raw)
    raw = copy.deepcopy(RAW_TABLE)
    raw["rules"].append({"kind": "police", "phrases": ["(ขโมย"]})
    with pytest.raises(ConfigError, match="bad phrase pattern"):
        _table(router, raw)
    raw = copy.deepcopy(RAW_TABLE)
    raw["rules"].append({"kind": "police"})
    with pytest.raises(ConfigError, match="needs 'topics' or 'phrases'"):
        _table(router, raw)
    raw = copy.deepcopy(RAW_TABLE)
    del raw["kinds"]["railway"]
    with pytest.raises(ConfigError, match="has kind 'railway', which is not one of"):
        _table(router, raw)


def test_router_load_reports_an_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "agencies.toml"
    bad.write_text("[agencies\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read agency directory"):
        Router.load(bad)


# ---- hand-written cases: one or more for every kind the table routes to ----

CASES = [
    ("ถนนหน้าบ้านเป็นหลุมเป็นบ่อ รถตกหลุมบ่อยมาก", "พญาไท", ["ถนน"], "สำนักงานเขตพญาไท"),
    ("สายไฟฟ้าแรงสูงขาดห้อยลงมาเกือบถึงพื้น อันตรายมาก", "บางเขน", ["สายไฟ"], f"{MEA} เขตบางเขน"),
    ("หม้อแปลงไฟฟ้าระเบิด ไฟดับทั้งซอย", "ลาดพร้าว", ["สายไฟ"], f"{MEA} เขตนวลจันทร์"),
    ("สายสื่อสารห้อยระโยงระยางเกี่ยวรถมอเตอร์ไซค์", "บางนา", ["สายไฟ"],
     "สำนักงานคณะกรรมการกิจการกระจายเสียง กิจการโทรทัศน์และกิจการโทรคมนาคมแห่งชาติ (กสทช.)"),
    ("มีรถจอดในที่ห้ามจอดหน้าปากซอยทุกวัน ขับรถผิดกฎจราจร", "บางกะปิ", ["กีดขวาง"], "สน.ลาดพร้าว"),
    ("ผักตบชวาเต็มคลอง ขอให้กรมชลประทานมาเก็บ", "หนองจอก", ["คลอง"], "กรมชลประทาน"),
    ("วัยรุ่นแข่งรถเสียงท่อดังทุกคืน", "ราชเทวี", ["เสียงรบกวน"], "สน.พญาไท"),
    ("สัญญาณไฟจราจรที่แยกเสียไม่ทำงาน รถติดยาว", "ดินแดง", ["จราจร"], "สำนักการจราจรและขนส่ง กรุงเทพมหานคร (สจส.)"),
    ("รถเมล์สาย 8 ไม่จอดรับผู้โดยสารที่ป้าย", "บางซื่อ", ["การเดินทาง"], "องค์การขนส่งมวลชนกรุงเทพ (ขสมก.)"),
    ("แท็กซี่ไม่รับผู้โดยสาร ปฏิเสธทุกคัน", "ปทุมวัน", [], "กรมการขนส่งทางบก"),
    ("ถนนเลียบทางรถไฟเป็นหลุมใหญ่ รางรถไฟชำรุด", "บางซื่อ", ["ถนน"], "การรถไฟแห่งประเทศไทย"),
    ("งานก่อสร้างรถไฟฟ้าสายสีส้มเสียงดังตลอดคืน", "บางกะปิ", ["เสียงรบกวน"],
     "การรถไฟฟ้าขนส่งมวลชนแห่งประเทศไทย (รฟม.)"),
    ("ไฟส่องสว่างบนทางพิเศษศรีรัชขาออกดับหลายดวง", "ดินแดง", ["แสงสว่าง"], "การทางพิเศษแห่งประเทศไทย"),
    ("ทางหลวงหมายเลข 9 ช่วงบางแคผิวทางยุบเป็นแอ่ง", "บางแค", ["ถนน"], "กรมทางหลวง"),
    ("ถนนทางหลวงชนบทช่วงข้ามคลองผิวแตกเป็นลอนคลื่น", "ตลิ่งชัน", ["ถนน"], "กรมทางหลวงชนบท กระทรวงคมนาคม"),
    ("ท่อประปาแตก น้ำไหลนองถนนมาสองวัน", "จตุจักร", ["ถนน"],
     "การประปานครหลวง กปน. (Metropolitan Waterworks Authority - MWA)"),
    ("ประตูระบายน้ำคลองเปิดปิดไม่ได้ น้ำเน่า", "บางกะปิ", ["คลอง"], "สำนักการระบายน้ำ กทม."),
    ("กลิ่นเหม็นจากโรงกำจัดขยะอ่อนนุชทั้งคืน", "ประเวศ", ["ความสะอาด"], "สำนักสิ่งแวดล้อม กทม."),
    ("สุนัขจรจัดไล่กัดคนในซอย ขอให้มาจับ", "หลักสี่", ["สัตว์จรจัด"], "กองสัตวแพทย์ สำนักอนามัย กทม."),
    ("มีคนไร้บ้านนอนบนทางเท้าหน้าห้าง และขอทานอุ้มเด็ก", "วัฒนา", ["คนจรจัด"], "สำนักพัฒนาสังคม กทม."),
    ("เรือโดยสารคลองแสนแสบรับผู้โดยสารเกินจำนวน", "ราชเทวี", ["คลอง"], "กรมเจ้าท่า (Marine Department)"),
    ("ถนนในหมู่บ้านเป็นหลุม รถเสียหาย", "เมืองนนทบุรี", ["ถนน"], "ศูนย์ดำรงธรรมจังหวัดนนทบุรี"),
]


@pytest.mark.parametrize(("text", "district", "topics", "expected"), CASES, ids=[c[3][:24] for c in CASES])
def test_hand_written_cases_route_to_the_owner(router: Router, text: str, district: str, topics: list[str],
                                               expected: str) -> None:
    out = route(router, text, district, topics)
    assert out["agencies"][0] == expected, out["agency_explanation"]
    assert set(out["agencies"]) <= router.agency_names
    assert out["agency_scores"][expected] > 0
    assert out["agency_explanation"]["table"]


def test_every_routable_kind_has_a_hand_written_case(router: Router) -> None:
    covered = {router.directory.kind_of(c[3]) for c in CASES}
    targets = {router.key_kind(("@" if r.is_agency else "") + r.target) for r in router.table.rules}
    assert targets | {"district_office", "damrongdhamma"} <= covered


def test_flooded_road_with_a_fallen_pole_gets_both_agencies(router: Router) -> None:
    out = route(router, "น้ำท่วมถนนสูงครึ่งเมตร และเสาไฟฟ้าล้มขวางถนน", "ลาดพร้าว", ["น้ำท่วม", "ถนน"])
    assert out["agencies"][:2] == [f"{MEA} เขตนวลจันทร์", "สำนักงานเขตลาดพร้าว"]
    assert "สำนักการระบายน้ำ กทม." in out["agencies"]
    assert out["agency_scores"][out["agencies"][0]] >= out["agency_scores"][out["agencies"][1]]
    assert not out["agency_needs_review"]


def test_vague_complaint_goes_to_review_with_candidates(router: Router) -> None:
    out = route(router, "แย่มาก", "บางนา", [])
    assert out["agency_needs_review"]
    assert out["agency_candidates"] and out["agency_candidates"][0]["agency"] == "สำนักงานเขตบางนา"
    assert any("vague" in r for r in out["agency_explanation"]["review_reasons"])


def test_no_district_goes_to_review(router: Router) -> None:
    out = route(router, "มอเตอร์ไซค์ขับย้อนศรและฝ่าไฟแดงทุกวันที่แยกนี้", None, ["จราจร"])
    assert out["agency_needs_review"]
    assert out["agencies"][0] == "กองบัญชาการตำรวจนครบาล (บช.น.)"  # the kind's fallback
    assert {c["agency"] for c in out["agency_candidates"]} >= {"กองบัญชาการตำรวจนครบาล (บช.น.)"}


def test_clear_complaint_with_district_needs_no_review(router: Router) -> None:
    out = route(router, "ทางเท้าชำรุดเป็นหลุมหน้าปากซอย เดินสะดุดล้ม", "บางรัก", ["ทางเท้า"])
    assert out["agencies"] == ["สำนักงานเขตบางรัก"]
    assert not out["agency_needs_review"] and out["agency_candidates"] == []


TOPICS = ["ถนน", "ทางเท้า", "น้ำท่วม", "แสงสว่าง", "ความสะอาด", "ความปลอดภัย", "กีดขวาง", "ท่อระบายน้ำ", "สะพาน",
          "จราจร", "สายไฟ", "คลอง", "ต้นไม้", "เสียงรบกวน", "ป้าย", "สัตว์จรจัด", "คนจรจัด", "PM2.5", "การเดินทาง",
          "ห้องน้ำ", "ป้ายจราจร", "ขยะ"]


@settings(max_examples=60, deadline=None)
@given(topics=st.lists(st.sampled_from(TOPICS), max_size=3), text=st.text(max_size=80),
       district=st.one_of(st.none(), st.sampled_from(["บางนา", "จตุจักร", "เมืองนนทบุรี", "ไม่มีเขตนี้"])))
def test_every_complaint_routes_somewhere(topics: list[str], text: str, district: str | None) -> None:
    r = Router.load() if not hasattr(test_every_complaint_routes_somewhere, "r") else test_every_complaint_routes_somewhere.r
    test_every_complaint_routes_somewhere.r = r  # type: ignore[attr-defined]
    out = route(r, text, district, topics)
    assert out["agencies"] and set(out["agencies"]) <= r.agency_names
    assert set(out["agency_scores"]) == set(out["agencies"])


# ---- the learned model with the table ----

def test_learned_model_overrides_the_table_only_when_confident(router: Router) -> None:
    texts = [normalize(t) for t in ["ไฟถนนดับทั้งซอยมืดมาก", "ไฟถนนดับหลายดวงในซอย", "ไฟทางดับมืดมากในซอย",
                                    "ถนนเป็นหลุมใหญ่", "ทางเท้าพังเป็นหลุม", "ถนนเป็นหลุมเป็นบ่อรถตก"]]
    kinds = ["electricity"] * 3 + ["district_office"] * 3
    learned = fit_agency_model(texts * 3, kinds * 3, C=50.0)
    text = "ไฟถนนดับทั้งซอย มืดมาก"
    learned.override_, learned.veto_ = 0.6, 1.01
    out = route(router, text, "บางเขน", ["แสงสว่าง"], learned)
    assert out["agencies"][0] == f"{MEA} เขตบางเขน"
    assert "overrode" in out["agency_explanation"]["decision"]
    assert out["agency_explanation"]["learned"]["electricity"] > 0.6
    learned.override_ = 1.01  # never confident enough: the table decides
    out = route(router, text, "บางเขน", ["แสงสว่าง"], learned)
    assert out["agencies"][0] == "สำนักงานเขตบางเขน"
    assert out["agency_needs_review"]  # table and model disagree
    assert f"{MEA} เขตบางเขน" in [c["agency"] for c in out["agency_candidates"]]


def test_corrections_become_training_rows(router: Router) -> None:
    # as triage.corrections exports them: agency is "|"-separated, primary first; empty when untouched
    corr = pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["น้ำประปาไม่ไหล", "ขยะล้น", "x", "ถนนพัง"],
                         "agency": ["การประปานครหลวง กปน. (Metropolitan Waterworks Authority - MWA)|เขตบางนา",
                                    "เขตบางนา", "ไม่มี", ""]})
    rows, unknown = correction_rows(corr, router)
    assert rows["kind"].tolist() == ["water_supply", "district_office"] and rows["id"].tolist() == ["a", "b"]
    assert unknown == 1


def test_assigned_month_is_split_by_time_and_labelled_by_the_other_kind(router: Router, tmp_path: Path) -> None:
    police = "เขตลาดพร้าว|สน.โชคชัย|สำนักงานตำรวจแห่งชาติ (Royal Thai Police)|กองบัญชาการตำรวจนครบาล (บช.น.)"
    assert assigned_primary(police, router) == "police"
    assert assigned_primary("เขตคลองเตย|ฝ่ายโยธา เขตคลองเตย", router) == "district_office"  # a unit of the office
    assert assigned_primary("กองสัตวแพทย์ สำนักอนามัย กทม.|เขตบางกอกน้อย|สำนักอนามัย กทม.", router) == "bma_health"
    assert assigned_primary("", router) == "district_office"
    # written out of time order, one empty comment: read back in time order without it
    times = [f"2023-05-1{d} 0{h}:00:00+00" for d, h in [(2, 3), (1, 5), (1, 4), (3, 1), (2, 9), (1, 6), (3, 2), (2, 1), (1, 7)]]
    orgs = [police, "เขตคลองเตย", "เขตบางนา", "เขตบางนา|การไฟฟ้านครหลวง MEA", "เขตบางนา", "เขตบางนา", "เขตบางนา", "เขตบางนา", "เขตบางนา"]
    comments = ["รถจอดขวาง", "ขยะ", "", "ไฟดับ", "ถนนพัง", "น้ำท่วม", "ทางเท้า", "ต้นไม้", "หมาจรจัด"]
    path = tmp_path / "assigned.csv"
    pd.DataFrame({"ticket_id": range(9), "timestamp": times, "comment": comments, "district": "บางนา",
                  "organization": orgs}).to_csv(path, index=False)
    frame = load_assigned(str(path), router)
    assert len(frame) == 8 and frame["time"].is_monotonic_increasing
    assert frame.loc[frame["comment"] == "รถจอดขวาง", "kind"].item() == "police"
    assert frame.loc[frame["comment"] == "ไฟดับ", "truth"].item() == {"district_office", "electricity"}
    fit, valid, test = split_assigned(frame, 0.5)
    assert (len(fit), len(valid), len(test)) == (2, 2, 4)
    assert fit["time"].max() <= valid["time"].min() and valid["time"].max() <= test["time"].min()
    assert len(split_assigned(frame, 0.0)[2]) == 8  # 0: all of it a test


# ---- the directory builder ----

def test_build_directory_reads_local_agencies_from_forwards() -> None:
    forwards = pd.DataFrame({
        "district": ["บางนา", "บางนา", "บางนา", "พระโขนง"],
        "forwarded_from": ["เขตบางนา"] * 3 + ["เขตพระโขนง"],
        "forwarded_to": ["สน.บางนา", "สน.บางนา", "สน.อุดมสุข", f"{MEA} เขตบางกะปิ"],
    })
    tickets = pd.DataFrame({"district": ["บางนา", "พระโขนง", "เมืองนนทบุรี"],
                            "province": ["กรุงเทพมหานคร", "กรุงเทพมหานคร", "นนทบุรี"], "note": [None, None, None]})
    raw = build_directory(forwards, tickets)
    agencies = raw["agencies"]
    assert agencies["สน.บางนา"]["districts"] == ["บางนา"] and agencies["สน.อุดมสุข"]["also"] == ["บางนา"]
    assert agencies[f"{MEA} เขตบางกะปิ"]["districts"] == ["พระโขนง"]
    assert agencies["ศูนย์ดำรงธรรมจังหวัดนนทบุรี"]["districts"] == ["เมืองนนทบุรี"]
    Directory.from_dict(raw)  # what the builder writes validates


def test_every_forwarded_agency_is_in_the_directory(router: Router) -> None:
    path = require_shared_data("routing/traffy-forwards.csv")  # with CI set, missing data fails
    forwards = pd.read_csv(path)
    missing = {a for a in forwards["forwarded_to"] if router.directory.canonical(str(a)) is None}
    assert not missing


# ---- the trained model (session fixture: configs/traffy.toml on a real slice, with its [agency] section) ----

def test_trained_model_carries_an_agency_model_and_routes(small_model: Any, small_model_dir: Path) -> None:
    import json

    assert small_model.agency is not None and "police" in small_model.agency.kinds
    router = Router.load()
    texts = ["สายสื่อสารห้อยระโยงระยางเกี่ยวรถมอเตอร์ไซค์ล้ม", "ถนนหน้าบ้านเป็นหลุมเป็นบ่อ รถตกหลุมบ่อยมาก"]
    recs = predict(small_model, texts, ["บางนา", "พญาไท"], router)  # the model, then the routing step
    for rec in recs:
        assert rec["agencies"] and set(rec["agencies"]) <= router.agency_names
        assert set(rec["agency_scores"]) == set(rec["agencies"])
        assert rec["agency_explanation"]["learned"] is not None  # both contributions are shown
        assert "topics" in rec and "urgency" in rec
    assert recs[1]["agencies"][0] == "สำนักงานเขตพญาไท"
    metrics = json.loads((small_model_dir / "current" / "metrics.json").read_text(encoding="utf-8"))["agency"]
    assert metrics["status_quo"]["ordinary_kept"] == 1.0
    for name in ("router", "table_only"):
        assert 0 <= metrics[name]["forwarded_kind"] <= 1 and 0 <= metrics[name]["ordinary_kept"] <= 1
        assert 0 <= metrics[name]["forwarded_top3_kind"] <= 1 and set(metrics[name]["mix"]) == {"2%", "5%", "8%"}
    # issue 14: a calibrated decision, suggestions, the later assigned month and the replay are all measured
    # break-even at the lowest real forward rate (2%) on the calibration at the configured rate (5%)
    assert small_model.agency.calibration_ is not None and small_model.agency.move_threshold_ == decision_threshold(0.05, 0.02) == 0.7206
    assert metrics["move_threshold"] == 0.7206 and metrics["decision_rate"] == 0.02
    assert recs[0]["agency_candidates"] and all(set(c) == {"agency", "score"} for c in recs[0]["agency_candidates"])
    assert metrics["assigned"]["tickets"] > 600 and 0 <= metrics["assigned"]["with_district"]["agreement"]["strict"] <= 1
    # the assigned month: earliest quarter fitted on, next quarter validation, latest half a frozen later test
    fit = metrics["assigned_fit"]
    assert fit["training_rows"] == fit["calibration_rows"] > 300 and fit["training_rows"] * 2 <= metrics["assigned"]["tickets"] + 1
    assert metrics["validation"]["assigned"]["to"] <= metrics["assigned"]["from"]
    assert 0 <= metrics["assigned"]["with_district"]["other_kind_top3"] <= 1
    assert metrics["replay"]["curve"] and metrics["replay"]["forwards"] == metrics["held_out"]["forwards"]
    report = (small_model_dir / "current" / "report.md").read_text(encoding="utf-8")
    assert "## Agency routing" in report and "mix 8%" in report and "corrections seen" in report
    assert "frozen test" in report and "Validation (what the settings were chosen on" in report


def test_reviewers_agency_correction_is_learned_by_retraining(small_model: Any, traffy_slice: Path) -> None:
    """The loop: a reviewer sets the agency of a case, the export carries an ``agency`` column, and
    retraining (the agency step of ``train()``, ``triage.agency.train_agency``) learns it."""
    from triage.agency import train_agency
    from triage.data import load_config, load_dataset
    from triage.testing import REPO
    from triage.text import normalize_many

    text = "มาตรวัดน้ำหน้าบ้านหมุนเร็วผิดปกติ บิลค่าน้ำสูงมาก"
    mwa = "การประปานครหลวง กปน. (Metropolitan Waterworks Authority - MWA)"
    before = small_model.agency.kind_proba(normalize(text)).get("water_supply", 0.0)
    config = load_config(REPO / "configs" / "traffy.toml", traffy_slice)
    config.agency = dict(config.agency, ordinary_train=1500, ordinary_eval=300)  # keep the test fast
    frame, _ = load_dataset(config)
    frame["norm"] = normalize_many(frame["text"].tolist())
    corrections = pd.DataFrame({"id": ["case-1", "case-2"], "text": [text, "มาตรวัดน้ำประปาเสีย บิลค่าน้ำแพงผิดปกติ"],
                                "agency": [mwa, mwa]})
    learned, metrics = train_agency(small_model, frame, config, corrections, 3, lambda _m: None)
    after = learned.kind_proba(normalize(text))
    assert metrics["corrections"]["used"] == 2
    assert max(after, key=after.get) == "water_supply" and after["water_supply"] > before
    out = Router.load().route(text, normalize(text), "จตุจักร", {"topics": [], "topic_scores": {}}, learned)
    assert mwa in out["agencies"] + [c["agency"] for c in out["agency_candidates"]]


def test_topic_rules_ignore_unlikely_topics(router: Router) -> None:
    text = "ถนนหน้าบ้านเป็นหลุมเป็นบ่อ รถตกหลุมบ่อยมาก"
    unlikely = {"topics": ["ถนน", "PM2.5"], "topic_scores": {"ถนน": 0.99, "PM2.5": 0.12}}
    likely = {"topics": ["ถนน", "PM2.5"], "topic_scores": {"ถนน": 0.99, "PM2.5": 0.9}}
    assert router.route(text, normalize(text), "พญาไท", unlikely, None)["agencies"] == ["สำนักงานเขตพญาไท"]
    assert "สำนักสิ่งแวดล้อม กทม." in router.route(text, normalize(text), "พญาไท", likely, None)["agencies"]


# ---- issue 14: intake boilerplate, the district in the text, a decision with a cost, suggestions, corrections ----

RELAYED = ("‘กรุณาอ่านข้อมูลบรรยายประกอบการปักหมุด’\n* ปัญหา: ไฟส่องสว่างดับหลายดวง\n* จุดเกิดเหตุ: (สถานที่สำคัญ / จุดสังเกต) "
           "หน้าตลาด\n* บ้านเลขที่:-\n* ซอย: วัดไผ่\n* เขต: บางเขน\r\n#1555")


def test_strip_intake_removes_the_channel_and_keeps_the_complaint() -> None:
    stripped = strip_intake(normalize(RELAYED))
    for boilerplate in ("กรุณาอ่าน", "#1555", "ปัญหา:", "จุดเกิดเหตุ", "บ้านเลขที่", "สถานที่สำคัญ", "*"):
        assert boilerplate not in stripped
    for content in ("ไฟส่องสว่างดับหลายดวง", "หน้าตลาด", "วัดไผ่", "บางเขน"):
        assert content in stripped
    assert strip_intake(stripped) == stripped
    plain = normalize("ถนนหน้าบ้านเป็นหลุมเป็นบ่อ รถตกหลุมบ่อยมาก")
    assert strip_intake(plain) == plain  # a citizen's own words are not boilerplate


def test_strip_intake_leaves_no_relay_template_in_the_shared_forwards() -> None:
    path = shared_data_dir() / "routing" / "traffy-forwards.csv"
    if not path.exists():
        pytest.skip(f"no forwards at {path}")
    norms = [normalize(t) for t in pd.read_csv(path)["comment"].dropna()]
    assert sum("กรุณาอ่านข้อมูลบรรยาย" in n for n in norms) >= 20 and sum("#1555" in n for n in norms) >= 100
    stripped = [strip_intake(n) for n in norms]
    assert not any("กรุณาอ่านข้อมูลบรรยาย" in n or "#" in n or "ปัญหา :" in n for n in stripped)


@pytest.mark.parametrize(("text", "district"), [
    ("ไฟฟ้าดับทั้งซอย เขตบางนา", "บางนา"),
    ("ถนนพัง\nเขต : แขวง ดอกไม้ เขต ประเวศ", "ประเวศ"),
    ("ขยะล้นถังที่ แขวงคลองตัน มาหลายวัน", "คลองเตย"),
    ("มีคนเร่ร่อนนอนที่สนามหลวงทุกคืน", "พระนคร"),
    ("ถนนหน้าบ้านเป็นหลุมเป็นบ่อ", None),
])
def test_district_is_read_from_the_text(router: Router, text: str, district: str | None) -> None:
    assert router.district_for(None, normalize(text)) == ((district, "text") if district else (None, None))
    assert router.district_for("จตุจักร", normalize(text)) == ("จตุจักร", "intake")  # the intake's district wins


def test_a_route_without_intake_district_uses_the_text(router: Router) -> None:
    out = route(router, "สายไฟฟ้าแรงสูงขาดห้อยลงมา อันตรายมาก เขตบางเขน", None, ["สายไฟ"])
    assert out["agencies"][0] == f"{MEA} เขตบางเขน"
    assert out["agency_explanation"]["district_source"] == "text"
    assert not any("district" in r for r in out["agency_explanation"]["review_reasons"])


def test_places_reject_an_unknown_district() -> None:
    with pytest.raises(ConfigError, match="place 'ที่ไหนสักแห่ง' has district 'ไม่มีเขตนี้', which is not a Bangkok district"):
        Places.from_dict({"places": {"ที่ไหนสักแห่ง": "ไม่มีเขตนี้"}}, ("บางนา",))


def test_district_read_from_text_agrees_with_the_intake_on_real_tickets(router: Router) -> None:
    path = shared_data_dir() / "traffy" / "traffy-2022-11.parquet"
    if not path.exists():
        pytest.skip(f"no tickets at {path}")
    t = pd.read_parquet(path, columns=["comment", "district", "province"])
    t = t[t["province"] == "กรุงเทพมหานคร"].dropna(subset=["comment"]).sample(1500, random_state=1)
    found = [(router.places.district_in(normalize(c)), d) for c, d in zip(t["comment"], t["district"])]
    named = [(g, d) for g, d in found if g]
    assert len(named) >= 50
    assert sum(g == d for g, d in named) / len(named) >= 0.85


LIGHT = ["ไฟฟ้าดับทั้งซอยมืดมาก", "ไฟฟ้าดับทั้งหมู่บ้านตั้งแต่เมื่อคืน", "ไฟฟ้าดับบ่อยมากในซอย", "ไฟฟ้าดับทั้งซอยหลายชั่วโมง"]
ROAD = ["ถนนเป็นหลุมใหญ่", "ทางเท้าพังเป็นหลุม", "ถนนเป็นหลุมเป็นบ่อรถตก", "ขยะล้นถังหน้าซอย", "รถจอดขวางหน้าบ้านทุกวัน",
        "รถจอดขวางทางเข้าซอย", "จอดรถขวางหน้าบ้านไม่มีที่ให้ออก", "ทางเท้าชำรุดเดินลำบาก"]


CRIME = ["วัยรุ่นแข่งรถเสียงดังทุกคืน", "มีการมั่วสุมเสพยาในซอย"]


def _calibrated(threshold: float = 0.5) -> Any:
    learned = fit_agency_model([normalize(t) for t in LIGHT + ROAD + CRIME] * 3,
                               (["electricity"] * 4 + ["district_office"] * 8 + ["police"] * 2) * 3, C=50.0)
    learned.calibration_, learned.move_threshold_ = (1.0, 0.0, 0.0, 0.0), threshold  # calibrated = the model's probability
    return learned


def test_calibrated_router_moves_only_at_the_break_even_point(router: Router) -> None:
    learned = _calibrated()
    text = "ไฟฟ้าดับทั้งซอย มืดมาก"
    p = learned.kind_proba(normalize(text))["electricity"]
    assert p > 0.5
    out = route(router, text, "บางเขน", [], learned)
    assert out["agencies"][0] == f"{MEA} เขตบางเขน" and "moved to electricity" in out["agency_explanation"]["decision"]
    learned.move_threshold_ = min(1.0, p + 0.01)  # just short of the threshold: stays, with the electricity branch listed
    out = route(router, text, "บางเขน", [], learned)
    assert out["agencies"][0] == "สำนักงานเขตบางเขน"
    suggested = out["agencies"] + [c["agency"] for c in out["agency_candidates"]]
    assert suggested.index(f"{MEA} เขตบางเขน") <= 2  # among the first three suggestions
    scores = [c["score"] for c in out["agency_candidates"]]
    assert scores == sorted(scores, reverse=True) and not set(out["agencies"]) & {c["agency"] for c in out["agency_candidates"]}


def test_calibrated_router_keeps_ordinary_complaints_without_review(router: Router) -> None:
    out = route(router, "ถนนเป็นหลุมใหญ่ รถตกหลุมบ่อยมาก", "พญาไท", ["ถนน"], _calibrated())
    assert out["agencies"][0] == "สำนักงานเขตพญาไท" and not out["agency_needs_review"]
    assert out["agency_candidates"]  # the reviewer still gets ranked suggestions
    out = route(router, "ถนนเป็นหลุมใหญ่ รถตกหลุมบ่อยมาก", None, ["ถนน"], _calibrated())
    assert not out["agency_needs_review"]  # no district alone does not make the agency uncertain
    assert out["agency_kinds"][0] == "district_office"


def test_calibrated_router_keeps_multi_agency_answers_district_office_first(router: Router) -> None:
    learned = _calibrated(threshold=0.99)
    out = route(router, "ถนนเป็นหลุมใหญ่ และเสาไฟฟ้าล้มขวางถนน", "ลาดพร้าว", ["ถนน"], learned)
    assert out["agencies"][:2] == ["สำนักงานเขตลาดพร้าว", f"{MEA} เขตนวลจันทร์"]


def test_corrections_move_a_kind_of_complaint_without_retraining(router: Router) -> None:
    """A policy change: reviewers start sending parking complaints to the police; the router follows
    after a few dozen corrections, applied at reload (``learn_corrections``), with no retrain."""
    learned = _calibrated()
    text = "มีรถจอดขวางหน้าบ้านทุกวัน ออกรถไม่ได้"
    assert route(router, text, "บางกะปิ", [], learned)["agencies"][0] == "สำนักงานเขตบางกะปิ"
    places = ["หน้าบ้าน", "ปากซอย", "หน้าตลาด", "ทางเข้าหมู่บ้าน", "หน้าโรงเรียน", "ริมถนน"]
    corrections = pd.DataFrame({
        "id": [f"case-{i}" for i in range(36)],
        "text": [f"รถจอดขวาง{places[i % 6]}ทุกวัน {['ออกรถไม่ได้', 'เดินไม่ได้', 'รบกวนมาก'][i % 3]}" for i in range(36)],
        "agency": ["สน.ลาดพร้าว"] * 36})
    follows = learned.learn_corrections(corrections, router)
    assert len(follows.memory_) == 36 and learned.memory_ is None  # the shipped model is untouched
    assert route(router, text, "บางกะปิ", [], follows)["agencies"][0] == "สน.ลาดพร้าว"
    assert route(router, "ถนนเป็นหลุมใหญ่ รถตกหลุม", "บางกะปิ", [], follows)["agencies"][0] == "สำนักงานเขตบางกะปิ"


def test_assigned_organisations_and_agreement(router: Router) -> None:
    assert assigned_kinds("เขตบางนา|ฝ่ายโยธา เขตบางนา", router) == {"district_office"}
    assert assigned_kinds("เขตบางนา|สน.บางนา|กรุงเทพโปร่งใส", router) == {"district_office", "police"}
    truth = [{"district_office"}, {"district_office", "police"}, {"district_office", "police"}, {"electricity"}]
    agreement = assigned_agreement(["district_office", "district_office", "police", "district_office"], truth)
    assert agreement == {"strict": 0.5, "any": 0.75}
    assert mixes(0.5, 0.9) == {"2%": round(0.02 * 0.5 + 0.98 * 0.9, 4), "5%": 0.88, "8%": 0.868}


def test_decision_threshold_is_the_break_even_point_at_the_decision_rate() -> None:
    assert decision_threshold(0.05, None) == 0.5 and decision_threshold(0.05, 0.05) == 0.5
    t = decision_threshold(0.05, 0.02)
    odds = t / (1 - t) * (0.02 / 0.98) / (0.05 / 0.95)  # the same complaint's odds at a 2% forward rate
    assert abs(odds - 1.0) < 1e-3 and t == 0.7206
    assert decision_threshold(0.05, 0.08) < 0.5  # a higher rate would move sooner
    with pytest.raises(DataError):
        decision_threshold(0.05, 0.0)


def test_source_words_are_left_out_of_the_agency_vocabulary() -> None:
    older = [normalize(t) for t in ["ถนนเป็นหลุม", "ไฟดับทั้งซอย", "ขยะล้นถัง", "ทางเท้าพัง"] * 10]
    newer = [normalize(t + " ขอให้ดำเนินการตรวจสอบและแก้ไขปัญหานี้ด้วย") for t in ["ถนนเป็นหลุม", "ไฟดับทั้งซอย", "ขยะล้นถัง"] * 3]
    drop = source_words(newer, older, ratio=20, min_count=5)
    assert drop and not {w for w in drop if "หลุม" in w or "ไฟ" in w or "ขยะ" in w}  # the closing formula, not the content
    assert source_words(newer, older, ratio=0) == frozenset()
    learned = fit_agency_model(older + newer, ["district_office"] * 30 + ["electricity"] * 10 + ["district_office"] * 9,
                               drop_words=drop)
    vocab = set(learned.pipeline.named_steps["words"].vocabulary_)
    assert vocab and not vocab & drop
    again = pickle.loads(pickle.dumps(learned))  # the analyzer without the words pickles with the model
    assert again.kind_proba(newer[0]) == learned.kind_proba(newer[0])


def test_length_matched_sample_follows_the_reference_lengths() -> None:
    short = [normalize(f"ถนนพัง {i}") for i in range(300)]
    long = [normalize(f"ถนนหน้าหมู่บ้านเป็นหลุมเป็นบ่อลึกมาก รถมอเตอร์ไซค์ตกหลุมล้มหลายคันแล้ว ขอให้ซ่อมด่วน {i}") for i in range(300)]
    pool = pd.DataFrame({"norm": short + long})
    picked = length_matched_sample(pool, long[:50], 200, seed=0)
    assert len(picked) == 200 and picked["norm"].is_unique
    assert sum(len(n) > 40 for n in picked["norm"]) >= 180  # the reference is long: so is the sample
    plain = length_matched_sample(pool, [], 200, seed=0)  # no reference: a plain random sample
    assert 60 <= sum(len(n) > 40 for n in plain["norm"]) <= 140


def test_separation_measures_how_well_the_model_tells_groups_apart() -> None:
    light = [normalize(t) for t in LIGHT] * 3
    road = [normalize(t) for t in ROAD] * 3
    learned = fit_agency_model(light + road, ["electricity"] * len(light) + ["district_office"] * len(road), C=50.0)
    fw = pd.DataFrame({"norm": light, "kind": "electricity"})
    ordinary = pd.DataFrame({"norm": road})
    assigned = pd.DataFrame({"norm": road + light, "truth": [{"district_office"}] * len(road) + [{"district_office", "electricity"}] * len(light)})
    out = separation(learned, fw, ordinary, assigned)
    assert out["forwards_vs_2023_office"] == out["forwards_vs_2022_ordinary"] == 1.0  # content that tells them apart
    assert out["2023_office_vs_2022"] == 0.5  # the same texts: nothing to tell
    assert out["assigned_other_vs_office"] == 1.0
