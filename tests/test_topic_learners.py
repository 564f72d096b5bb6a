"""The topic head's learners (``TopicHead.learner``) and the TF-IDF settings a dataset config may choose."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from triage import fastpath
from triage.learners import TOPIC_LEARNERS, AveragedLinear
from triage.model import TopicHead, fit_featurizer
from triage.text import normalize_many

ROAD = ["ถนนเป็นหลุมเป็นบ่อ รถตกหลุม", "ถนนชำรุดมาก ผิวถนนแตก", "ถนนทรุด ขอให้ซ่อมถนน"]
LIGHT = ["ไฟฟ้าส่องสว่างดับ ซอยมืด", "ไฟทางดับทั้งซอย", "หลอดไฟถนนเสีย มืดมาก"]
TRASH = ["ขยะล้นถัง ส่งกลิ่นเหม็น", "มีขยะกองใหญ่หน้าปากซอย", "ไม่มีคนมาเก็บขยะหลายวัน"]


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    groups = [ROAD, LIGHT, TRASH]
    labelled = [(t, [k]) for k, g in enumerate(groups) for t in g * 12] + [(f"{ROAD[0]} {LIGHT[1]}", [0, 1])] * 5
    texts = normalize_many([f"{t} {rng.integers(1000)}" for t, _ in labelled])
    Y = np.zeros((len(labelled), 3), dtype=np.int8)
    for i, (_t, labs) in enumerate(labelled):
        Y[i, labs] = 1
    featurizer, X = fit_featurizer("word", texts)
    return featurizer, X, Y


@pytest.mark.parametrize("learner", TOPIC_LEARNERS)
def test_every_learner_scores_in_one_product_as_each_label_does_and_learns(rows, learner):
    featurizer, X, Y = rows
    head = TopicHead(["road", "light", "trash"], True, C=0.5, learner=learner).fit(X, Y)
    S = head.decision(X)
    for k, est in enumerate(head.clf_.estimators_):
        assert np.array_equal(S[:, k], est.decision_function(X)), (learner, k)
    head.calibrate(X, Y)
    unseen = featurizer.transform(normalize_many(["ไฟทางดับ มืดมาก", "ขยะกองใหญ่ ส่งกลิ่น"])).tocsr()
    assert head.decide(head.proba(unseen)).argmax(axis=1).tolist() == [1, 2]
    again = pickle.loads(pickle.dumps(head))
    assert np.array_equal(again.decision(unseen), head.decision(unseen))


def test_the_average_is_the_svm_plus_the_weighted_logistic_regression(rows):
    _featurizer, X, Y = rows
    X = X.astype(np.float64)
    avg = AveragedLinear(C=0.5, logreg_C=4.0, weight=0.3, random_state=0).fit(X, Y[:, 1])
    svc = LinearSVC(C=0.5, random_state=0).fit(X, Y[:, 1])
    lr = LogisticRegression(C=4.0, solver="liblinear", random_state=0).fit(X, Y[:, 1])
    assert np.allclose(avg.coef_, svc.coef_ + 0.3 * lr.coef_) and np.allclose(avg.intercept_, svc.intercept_ + 0.3 * lr.intercept_)
    assert list(avg.predict(X[:3])) == [0, 0, 0] and avg.predict(X[Y[:, 1] == 1]).all()
    with pytest.raises(ValueError, match="not one of"):
        TopicHead(["a"], True, learner="forest").fit(X, Y[:, :1])


def test_tfidf_settings_change_the_features_and_the_fast_path_still_copies_them(rows):
    texts = normalize_many([t for g in (ROAD, LIGHT, TRASH) for t in g] + ["ถนนถนนถนน ไฟดับ"])
    plain, Xp = fit_featurizer("word", texts)
    loose, Xl = fit_featurizer("word", texts, min_df=1, sublinear_tf=False)
    assert Xl.shape[1] > Xp.shape[1]  # words in one text only are kept
    word = dict(loose.transformer_list)["word"]
    assert word.min_df == 1 and not word.sublinear_tf and fastpath.FastTfidf.handles(word)
    fast = fastpath.transform(loose, texts, fastpath.Analyses()).tocsr()
    slow = loose.transform(texts).tocsr()
    assert np.array_equal(fast.indices, slow.indices) and np.array_equal(fast.data, slow.data)


def test_a_config_model_section_chooses_the_learner_and_tfidf_settings():
    from triage.data import config_from_dict
    from triage.errors import DataError
    from triage.training import TrainOptions, topic_settings, with_config_defaults

    raw = {"data": "x.csv", "text_column": "t", "heads": {"topic": {"column": "y"}},
           "model": {"learner": "avg", "logreg_C": 8, "avg_weight": 0.5, "min_df": 1, "sublinear_tf": False}}
    config = config_from_dict(raw, ".")
    with_config_defaults(TrainOptions(), config)  # known keys
    assert topic_settings(config) == ({"learner": "avg", "logreg_C": 8.0, "avg_weight": 0.5},
                                      {"min_df": 1, "sublinear_tf": False})
    assert topic_settings(config_from_dict({**raw, "model": {}}, ".")) == ({}, {})
    with pytest.raises(DataError, match="learner"):
        topic_settings(config_from_dict({**raw, "model": {"learner": "forest"}}, "."))
    with pytest.raises(DataError, match="dedup"):
        topic_settings(config_from_dict({**raw, "model": {"dedup": "fuzzy"}}, "."))
    with pytest.raises(DataError, match="true or false"):
        topic_settings(config_from_dict({**raw, "model": {"sublinear_tf": "false"}}, "."))


def test_letters_dedup_keeps_the_latest_of_texts_that_differ_only_in_digits_spaces_or_punctuation():
    import pandas as pd

    from triage.errors import DataError
    from triage.training import distinct_texts, letters_key

    norm = normalize_many(["ไฟดับ ซอย 5", "ไฟดับ ซอย 7!", "ไฟดับซอย5", "ถนนพัง ซอย 5", "ถนนพัง ซอย 5"])
    rows = pd.DataFrame({"norm": norm, "topic": [["light"], ["light", "safety"], ["x"], ["road"], ["road2"]]},
                        index=[10, 11, 12, 13, 14])
    assert letters_key(norm[0]) == letters_key(norm[1]) != letters_key(norm[3])
    assert distinct_texts(rows).index.tolist() == [10, 11, 12, 14]  # exact: the same text once, the latest
    assert distinct_texts(rows, "letters").index.tolist() == [12, 14]
    with pytest.raises(DataError, match="dedup"):
        distinct_texts(rows, "fuzzy")
