"""Training internals on small real data: shared tokenisation, stage times."""

from __future__ import annotations

import numpy as np

from triage.model import analyze_words, fit_featurizer, make_featurizer
from triage.text import normalize_many, word_analyzer
from triage.training import Clock

TEXTS = [
    "ไฟฟ้าส่องสว่างริมถนนดับทั้งซอย กลางคืนมืดมาก",
    "มีขยะกองใหญ่ส่งกลิ่นเหม็นหน้าปากซอย ไม่มีคนมาเก็บหลายวันแล้ว",
    "ฝนตกหนัก น้ำท่วมถนนสูง รถเล็กผ่านไม่ได้ ท่อระบายน้ำอุดตัน",
    "ทางเท้าชำรุด กระเบื้องแตก เดินลำบาก",
    "ไฟฟ้าดับทั้งซอย ถนนมืด",
    "ขยะล้นถัง ส่งกลิ่นเหม็น",
]


def test_precomputed_words_fit_the_same_featurizer_as_tokenising():
    norm = normalize_many(TEXTS * 3)
    analyzed = analyze_words(norm[:10])  # some texts looked up, others analysed on the spot
    assert analyzed[norm[0]] == word_analyzer(norm[0])
    slow = make_featurizer("word").fit(norm)
    fast, X = fit_featurizer("word", norm, analyzed)
    assert dict(fast.transformer_list)["word"].analyzer is word_analyzer  # the shipped one tokenises itself
    assert dict(fast.transformer_list)["word"].vocabulary_ == dict(slow.transformer_list)["word"].vocabulary_
    assert np.allclose(X.toarray(), slow.transform(norm).toarray())
    assert np.allclose(fast.transform(["ถนนมืด ไฟดับ"]).toarray(), slow.transform(["ถนนมืด ไฟดับ"]).toarray())


def test_clock_books_time_to_stages_and_logs_them():
    lines: list[str] = []
    clock = Clock(lines.append)
    clock.step("loaded", "load")
    clock.step("a note")  # not a stage: its time goes to the next stage
    clock.step("fitted", "fit")
    clock.step("fitted again", "fit")
    assert list(clock.stages) == ["load", "fit"] and all(v >= 0 for v in clock.stages.values())
    assert len(lines) == 4 and lines[2].endswith(" s)") and "a note" in lines[1]
