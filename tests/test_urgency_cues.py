"""Object + state danger cues on real tokens, negation, "already fixed", and reweighted urgency metrics."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from triage.data import HeadConfig, config_from_dict, read_label_files
from triage.model import Lexicon
from triage.text import normalize
from triage.training import urgency_metrics


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load()


def cues(lexicon: Lexicon, text: str) -> set[str]:
    return {name for name, _phrase in lexicon.matches(normalize(text))}


@pytest.mark.parametrize(("text", "pair"), [
    ("สายไฟขาดห้อยลงมาเกือบถึงพื้น", "wire+down"),
    ("สายสื่อสารหย่อนมาก", "wire+down"),           # object written as two tokens (สาย + สื่อสาร)
    ("สายไฟช๊อตมีประกายไฟ", "wire+sparking"),       # tone mark variant of ช็อต
    ("เสาไฟฟ้าหน้าบ้านเอียงมาก", "pole+leaning"),
    ("ฝาท่อหายไปสองวันแล้ว", "manhole_cover+missing"),
    ("ไม่มีฝาท่อระบายน้ำ", "manhole_cover+missing"),  # state before the object
    ("ต้นไม้ใหญ่โค่นขวางถนน", "tree+down"),
    ("ป้ายโฆษณาจะหล่นลงมา", "sign+leaning"),
    ("เครนก่อสร้างเอียง", "crane+leaning"),
    ("ถนนยุบเป็นโพรงใหญ่", "hole+collapsing"),
    ("รั้วเหล็กล้มทับทางเดิน", "fence+down"),         # ล้มทับ: two states glued into one token
    ("สัญญาณไฟจราจรไม่ทำงานที่แยก", "traffic_light+broken"),
])
def test_object_and_state_are_found_on_tokens(lexicon, text, pair):
    found = cues(lexicon, text)
    assert pair in found and "hazard_any" in found


def test_a_negated_state_is_not_a_hazard(lexicon):
    found = cues(lexicon, "ต้นไม้หน้าบ้านยังไม่ล้ม แค่กิ่งเยอะ")
    assert "tree+down" not in found and "hazard_negated" in found and "hazard_any" not in found


def test_already_fixed_is_its_own_feature(lexicon):
    assert "resolved" in cues(lexicon, "สายไฟขาด ตอนนี้การไฟฟ้าซ่อมแล้ว ขอบคุณครับ")
    assert "resolved" not in cues(lexicon, "สายไฟขาด ยังไม่มีใครมาซ่อม")


def test_an_object_far_from_the_state_or_alone_is_no_hazard(lexicon):
    assert "hazard_any" not in cues(lexicon, "เสาไฟฟ้าหน้าบ้าน")
    assert "hazard_any" not in cues(lexicon, "ต้นไม้ริมถนนหน้าซอยยาวมากเลยครับ บังทางเข้าออกหมู่บ้านทำให้มองไม่เห็นรถที่วิ่งมาจากอีกฝั่ง คนขี่จักรยานล้ม")


def test_features_have_one_column_per_cue_and_survive_pickling(lexicon):
    X = lexicon.features([normalize("สายไฟขาด"), normalize("ขยะเยอะ")])
    assert X.shape == (2, len(lexicon.names)) and X[0].sum() >= 2 and X[1].sum() == 0
    again = pickle.loads(pickle.dumps(lexicon))
    assert again.names == lexicon.names and again.matches(normalize("สายไฟขาด")) == lexicon.matches(normalize("สายไฟขาด"))


def test_the_words_remembered_while_finding_hazards_are_not_saved_with_a_model(lexicon):
    """``HazardCues`` remembers each folded word's spans while it works; a pickled lexicon (as in a saved model)
    carries the same attributes as before it did, and finds the same."""
    texts = [normalize(t) for t in ("สายไฟขาดห้อยลงมา", "รั้วเหล็กล้มทับทางเดิน", "ขยะเยอะมาก")]
    found = [lexicon.matches(t) for t in texts]
    assert lexicon.hazard is not None and lexicon.hazard._word_memo  # it did remember words
    again = pickle.loads(pickle.dumps(lexicon))
    assert again.hazard is not None and "_word_memo" not in vars(again.hazard)
    assert set(vars(again.hazard)) <= {"objects", "states", "negators", "resolved", "after", "before",
                                       "_terms", "_prefixes", "names"}
    assert [again.matches(t) for t in texts] == found


def test_reweighted_urgency_metrics_count_each_row_by_its_weight():
    y = np.array(["high", "high", "medium", "low"])
    pred = ["high", "medium", "high", "low"]
    plain = urgency_metrics(y, pred)
    assert plain["high_recall"] == 0.5 and plain["flagged_high_share"] == 0.5
    weighted = urgency_metrics(y, pred, np.array([1.0, 3.0, 1.0, 5.0]))
    assert weighted["high_recall"] == 0.25 and weighted["flagged_high_share"] == 0.2
    assert weighted["confusion"]["high"]["medium"] == 1


def test_label_files_are_joined_and_a_later_file_wins(tmp_path):
    (tmp_path / "old.csv").write_text("ticket_id,urgency\nA,low\nB,high\n", encoding="utf-8")
    (tmp_path / "new.csv").write_text("ticket_id,urgency,stratum,pool,drawn\nB,medium,random,40,4\nC,high,enriched,9,3\n",
                                      encoding="utf-8")
    config = config_from_dict({"data": "x.csv", "text_column": "t", "id_column": "ticket_id",
                               "heads": {"urgency": {"column": "urgency", "file": "old.csv", "files": ["new.csv"]}}},
                              tmp_path)
    table = read_label_files(config, config.heads["urgency"])
    assert table["urgency"].to_dict() == {"A": "low", "B": "medium", "C": "high"}
    assert table.loc["B", "stratum"] == "random" and table.loc["B", "pool"] == 40
    assert isinstance(config.heads["urgency"], HeadConfig)


def test_a_missing_extra_label_file_is_left_out_and_named(tmp_path):
    (tmp_path / "old.csv").write_text("ticket_id,urgency\nA,low\n", encoding="utf-8")
    config = config_from_dict({"data": "x.csv", "text_column": "t", "id_column": "ticket_id",
                               "heads": {"urgency": {"column": "urgency", "file": "old.csv", "files": ["nope.csv"]}}},
                              tmp_path)
    missing: list[str] = []
    assert read_label_files(config, config.heads["urgency"], missing)["urgency"].to_dict() == {"A": "low"}
    assert missing == ["nope.csv"]


@pytest.mark.unit
def test_the_medium_low_boundary_is_moved_to_where_macro_f1_is_best(lexicon):
    from scipy import sparse

    from triage.model import UrgencyHead

    head = UrgencyHead(["high", "medium", "low"], lexicon)
    # P(high), P(medium), P(low): the class-balanced fit leans low, so every medium row has P(low) a bit
    # above P(medium) (margin log(0.5/0.4) = 0.22) and every low row far above (log(0.8/0.15) = 1.67)
    P = np.array([[0.1, 0.4, 0.5]] * 7 + [[0.05, 0.15, 0.8]] * 2 + [[0.9, 0.05, 0.05]])
    y = np.array(["medium"] * 7 + ["low"] * 2 + ["high"])
    high = P[:, 0] >= 0.5
    bias = head._choose_low_bias(y, P, high)
    assert 0.22 < bias < 1.67
    head.high_threshold_, head.low_bias_ = 0.5, bias
    Z = sparse.csr_matrix((len(y), len(lexicon.names) + 5))  # no cue matched
    assert head.decide(P, Z) == list(y)
    head.low_bias_ = 0.0  # the plain argmax (a model saved before the bias): medium rows called low
    assert head.decide(P, Z).count("low") == 9


@pytest.mark.model
def test_the_urgency_design_counts_its_columns_on_the_training_rows_only(small_model):
    from triage.model import UrgencyHead
    from triage.training import URGENCY_LEVELS, _urgency_design

    norm = [normalize(t) for t in ("สายไฟขาดห้อยลงมา qzxjv", "ขยะไม่มีคนเก็บ", "ขยะเยอะ ส่งกลิ่น", "ท่อแตกน้ำไหล")]
    fit_rows = np.array([False, True, True, True])  # the first text is a frozen row
    head = UrgencyHead(list(URGENCY_LEVELS), Lexicon.load())
    Z = _urgency_design(small_model, head, norm, None, fit_rows)
    vocabulary = head.char_vec_.vocabulary_
    assert "ขยะ" in vocabulary and not any("qz" in gram for gram in vocabulary)
    # the character block follows the cue, topic-probability, length and word columns
    assert Z.shape[1] == len(head.lexicon.names) + len(small_model.topic_labels) + 2 + len(head.word_cols_) \
        + len(vocabulary)


def test_the_high_threshold_flags_the_chosen_share_of_out_of_fold_scores(lexicon):
    from triage.model import HIGH_SHARE, UrgencyHead

    rng = np.random.default_rng(0)
    score = rng.random(1000)
    y_high = (score > 0.97).astype(int)  # 3% high, all at the top: the cost rule would flag about 3%
    head = UrgencyHead(["high", "medium", "low"], lexicon)
    assert head.high_share == HIGH_SHARE
    flagged = (score >= head._choose_threshold(y_high, score)).mean()
    assert abs(flagged - HIGH_SHARE) < 0.002
    head.high_share = None  # the cost rule: a threshold at the top highs, far fewer flagged
    assert (score >= head._choose_threshold(y_high, score)).mean() < 0.05


def test_the_flagged_share_is_counted_on_the_rows_it_is_given(lexicon):
    from triage.model import HIGH_SHARE, UrgencyHead

    rng = np.random.default_rng(1)
    score = np.concatenate([rng.random(1000), 0.9 + 0.1 * rng.random(300)])  # 300 cue-drawn rows, all near the top
    counted = np.arange(len(score)) < 1000
    y_high = (score > 0.95).astype(int)
    head = UrgencyHead(["high", "medium", "low"], lexicon)
    on_counted = head._choose_threshold(y_high, score, counted)
    assert abs((score[counted] >= on_counted).mean() - HIGH_SHARE) < 0.002
    on_all = head._choose_threshold(y_high, score)  # the cue rows push the threshold up: fewer ordinary rows flagged
    assert (score[counted] >= on_all).mean() < 0.1
    assert head._choose_threshold(y_high, score, np.zeros(len(score), bool)) == on_all  # nothing counted: all rows


def test_the_cue_stratum_is_left_out_of_the_share_and_fit_passes_the_rows_on(lexicon):
    import pandas as pd
    from scipy import sparse

    from triage.model import HIGH_SHARE, UrgencyHead
    from triage.training import share_rows

    strata = pd.DataFrame({"stratum": ["random", "enriched", "cue", "other"], "pool": 1, "drawn": 1})
    assert share_rows(strata, 4).tolist() == [True, True, False, True]
    assert share_rows(strata[strata["stratum"] != "cue"], 3) is None  # no cue row: every row counts
    assert share_rows(None, 4) is None and share_rows(strata, 5) is None

    rng = np.random.default_rng(2)
    n = 400
    y = np.where(rng.random(n) < 0.15, "high", np.where(rng.random(n) < 0.8, "medium", "low"))
    X = rng.normal(size=(n, 6)) + (y == "high")[:, None] * 1.5
    Z = sparse.hstack([sparse.csr_matrix((n, len(lexicon.names))), X.astype(np.float32)], format="csr")  # no cue
    counted = rng.random(n) < 0.7
    head = UrgencyHead(["high", "medium", "low"], lexicon).fit(Z, y, seed=0, share_rows=counted)
    oof = np.zeros((n, 3))
    for tr, te in head._splits(y, 0):
        oof[te] = head._align(clf := head._fit_clf(Z[tr], y[tr]), clf.predict_proba(Z[te]))
    assert head.high_threshold_ == float(np.quantile(oof[counted, 0], 1 - HIGH_SHARE, method="higher"))
