"""Training internals on small real data: shared tokenisation, stage times."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_a_label_first_seen_in_validation_is_calibrated_out_of_fold():
    """A label the training part never had (like ป้าย before 2022-10-18) gets its own calibration and
    threshold from out-of-fold validation scores instead of the pooled default."""
    from triage.model import TopicHead

    road = ["ถนนเป็นหลุมเป็นบ่อ รถตกหลุม", "ถนนชำรุดมาก ผิวถนนแตก", "ถนนทรุด ขอให้ซ่อมถนน"]
    light = ["ไฟฟ้าส่องสว่างดับ ซอยมืด", "ไฟทางดับทั้งซอย", "หลอดไฟถนนเสีย มืดมาก"]
    sign = ["ป้ายโฆษณาบังทาง", "ป้ายหาเสียงติดบนทางเท้า", "ป้ายผิดกฎหมายริมถนน"]
    rng = np.random.default_rng(0)
    train = [(t, [0]) for t in road * 20] + [(t, [1]) for t in light * 20]
    valid = [(t, [0]) for t in road * 6] + [(t, [1]) for t in light * 6] + [(t, [2]) for t in sign * 8]
    rows = train + valid
    texts = normalize_many([f"{t} {rng.integers(1000)}" for t, _ in rows])
    Y = np.zeros((len(rows), 3), dtype=np.int8)
    for i, (_t, labs) in enumerate(rows):
        Y[i, labs] = 1
    in_valid = np.arange(len(rows)) >= len(train)
    featurizer, X = fit_featurizer("word", texts)
    head = TopicHead(["road", "light", "sign"], True).fit(X[~in_valid], Y[~in_valid])
    head.calibrate(X[in_valid], Y[in_valid])
    pooled = head.calibration_[2].copy()
    assert head.calibrate_new_labels(X, Y, in_valid) == ["sign"]
    assert not np.allclose(head.calibration_[2], pooled)
    refit = TopicHead(head.labels, True)
    refit.calibration_, refit.thresholds_ = head.calibration_, head.thresholds_
    refit.fit(X, Y)
    decided = refit.decide(refit.proba(featurizer.transform(normalize_many(["ป้ายโฆษณาล้มบนทางเท้า"]))))
    assert decided[0, 2]
    assert refit.calibrate_new_labels(X, Y, in_valid) == []  # nothing new once training had it


def test_dataset_config_model_section_sets_unset_options():
    from triage.data import config_from_dict
    from triage.errors import DataError
    from triage.training import TrainOptions, with_config_defaults

    raw = {"data": "x.csv", "text_column": "t", "heads": {"topic": {"column": "y"}},
           "model": {"features": "both", "topic_C": 0.25, "char_ngram": [2, 5]}}
    config = config_from_dict(raw, ".")
    opts = with_config_defaults(TrainOptions(), config)
    assert (opts.features, opts.topic_C, opts.char_ngram) == ("both", 0.25, (2, 5))
    assert with_config_defaults(TrainOptions(features="word"), config).features == "word"  # the command line wins
    plain = with_config_defaults(TrainOptions(), config_from_dict({**raw, "model": {}}, "."))
    assert (plain.features, plain.topic_C, plain.char_ngram) == ("word", 0.5, (2, 4))
    with pytest.raises(DataError, match="knows only"):
        with_config_defaults(TrainOptions(), config_from_dict({**raw, "model": {"feature": "x"}}, "."))


def test_the_report_has_the_stage_times_and_the_load_average():
    from triage.evaluate import markdown_report

    lines: list[str] = []
    clock = Clock(lines.append)
    clock.step("fitted", "topic: fit (train)")
    assert "load average" in clock.summary()
    metrics = {"version": "v", "dataset": "d", "split": "s", "stage_seconds": {"topic: fit (train)": 1.5},
               "stage_cpu_seconds": {"topic: fit (train)": 2.5}, "train_seconds": 1.6, "train_cpu_seconds": 2.6,
               "load_average": {"start": [0.5, 0.4, 0.3], "end": [1.0, 0.5, 0.3]}}
    report = markdown_report(metrics)
    assert "## Training time" in report and "| topic: fit (train) | 1.5 | 2.5 |" in report
    assert "[0.5, 0.4, 0.3] at the start" in report


def test_balanced_class_weight_lifts_a_rare_labels_scores():
    """``TopicHead.class_weight="balanced"`` (tried for TrueVoice and Traffy, see README) weighs a
    label's few positives as much as its many negatives: its scores on those positives rise."""
    from triage.model import TopicHead

    road = ["ถนนเป็นหลุมเป็นบ่อ รถตกหลุม", "ถนนชำรุดมาก ผิวถนนแตก", "ถนนทรุด ขอให้ซ่อมถนน"]
    toilet = ["ห้องน้ำสาธารณะสกปรก ถนนหน้าตลาด"]
    rows = [(t, 0) for t in road * 30] + [(t, 1) for t in toilet * 3]
    rng = np.random.default_rng(0)
    texts = normalize_many([f"{t} {rng.integers(1000)}" for t, _ in rows])
    Y = np.zeros((len(rows), 2), dtype=np.int8)
    for i, (_t, k) in enumerate(rows):
        Y[i, k] = 1
    _featurizer, X = fit_featurizer("word", texts)
    plain = TopicHead(["road", "toilet"], True, C=0.5).fit(X, Y)
    balanced = TopicHead(["road", "toilet"], True, C=0.5, class_weight="balanced").fit(X, Y)
    rare = Y[:, 1] == 1
    assert balanced.decision(X[rare])[:, 1].mean() > plain.decision(X[rare])[:, 1].mean()
