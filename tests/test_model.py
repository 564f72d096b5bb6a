"""Behaviour of a small model trained once per session on a real slice of Traffy."""

import pytest

STREETLIGHT = "ไฟฟ้าส่องสว่างริมถนนดับทั้งซอย กลางคืนมืดมาก"
GARBAGE = "มีขยะกองใหญ่ส่งกลิ่นเหม็นหน้าปากซอย ไม่มีคนมาเก็บหลายวันแล้ว"
FLOOD = "ฝนตกหนัก น้ำท่วมถนนสูง รถเล็กผ่านไม่ได้ ท่อระบายน้ำอุดตัน"


def test_prediction_record_has_the_contract_fields(small_model):
    (rec,) = small_model.predict([STREETLIGHT])
    assert set(rec) >= {"topics", "topic_scores", "urgency", "urgency_scores", "explanation"}
    assert rec["topics"] and all(t in small_model.topic_labels for t in rec["topics"])
    assert rec["urgency"] in small_model.urgency_levels
    assert abs(sum(rec["urgency_scores"].values()) - 1) < 1e-3
    assert all(0 <= p <= 1 for p in rec["topic_scores"].values())
    assert rec["explanation"] and all(e["weight"] > 0 for e in rec["explanation"])


@pytest.mark.parametrize(("text", "topic"), [(STREETLIGHT, "แสงสว่าง"), (GARBAGE, "ความสะอาด"), (FLOOD, "น้ำท่วม")])
def test_clear_complaints_get_their_topic(small_model, text, topic):
    (rec,) = small_model.predict([text])
    assert topic in rec["topics"], rec["topic_scores"]


@pytest.mark.parametrize("extra", ["ติดต่อกลับ 081-234-5678", "เขตจตุจักร", "โทร 0898765432 คุณสมชาย เขตบางรัก"])
@pytest.mark.parametrize("text", [STREETLIGHT, GARBAGE, FLOOD])
def test_phone_number_or_district_does_not_change_the_topic(small_model, text, extra):
    base, varied = small_model.predict([text, f"{text} {extra}"])
    assert base["topics"][0] == varied["topics"][0]


@pytest.mark.parametrize("text", ["ทางเท้าหน้าบ้านชำรุด", "เสาไฟฟ้าหน้าบ้าน", "ฝาท่อระบายน้ำหน้าโรงเรียน"])
def test_a_danger_phrase_raises_urgency(small_model, text):
    calm, danger = small_model.predict([text, f"{text} สายไฟช็อตมีประกายไฟ เด็กเกือบโดนไฟดูด"])
    assert danger["urgency_scores"]["high"] > calm["urgency_scores"]["high"]
    assert danger["urgency"] == "high"


def test_a_suggestion_is_not_high(small_model):
    (rec,) = small_model.predict(["อยากเสนอให้เพิ่มต้นไม้ในสวนสาธารณะ จะได้ร่มรื่นขึ้นครับ"])
    assert rec["urgency"] != "high"


def test_awkward_inputs_get_a_prediction(small_model):
    texts = ["\u200b", "5555555", "ๆๆๆๆ", "😀😀", "hello", "ก" * 20000, "๑๒๓"]
    recs = small_model.predict(texts)
    assert len(recs) == len(texts) and all(r["topics"] for r in recs)
