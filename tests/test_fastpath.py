"""The fast prediction path gives scikit-learn's numbers: on real complaints, with the session's real model."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage import fastpath
from triage.prediction import predict
from triage.routing import Router
from triage.text import normalize_many


@pytest.fixture(scope="module")
def complaints(traffy_slice: Path) -> tuple[list[str], list[str | None]]:
    """300 real complaints (with their districts) of the slice's last month, and a few awkward ones."""
    last = max((traffy_slice / "traffy").glob("*.parquet"))
    frame = pd.read_parquet(last, columns=["comment", "district"]).dropna(subset=["comment"])
    frame = frame[frame["comment"].str.strip().str.len() > 0].sample(300, random_state=3)
    # awkward ones last, ending with words the model has never seen (an empty feature row at the end)
    texts = frame["comment"].tolist() + ["ไฟดับ", "5555 ค่ะะะะ ๆๆๆ", "ok", "ถนน" * 3000, "a\u200bb 081-234-5678",
                                         "zzqxj qqzzv"]
    districts = [d if isinstance(d, str) else None for d in frame["district"]] + [None, "บางรัก", "x", None, "ปทุมวัน",
                                                                                  None]
    return texts, districts


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def test_features_are_scikit_learns(small_model, complaints):
    norm = normalize_many(complaints[0])
    fast = fastpath.transform(small_model.featurizer, norm, fastpath.Analyses()).tocsr()
    slow = small_model.featurizer.transform(norm).tocsr()
    assert fast.shape == slow.shape and fast.dtype == slow.dtype
    assert np.array_equal(fast.indptr, slow.indptr) and np.array_equal(fast.indices, slow.indices)
    assert np.array_equal(fast.data, slow.data)


AWKWARD_CHARS = ["", " ", "a", "A B  C\t\nD", "ไฟดับ", "İstanbul ẞ ǅ", "x\x00y", "😀 ไฟ 😀", "\u3000ไฟ\u2003ดับ\x1c\x1dx",
                 "ab", "ๆๆๆ 5555", "\u200bไฟ\u200b", "ถนนถนน" * 500]
"""Texts for the character n-grams: empty, upper case whose lower case grows, other white space, characters
that are in no n-gram of the vocabulary, one-letter words, a long text."""


def test_character_ngrams_are_scikit_learns(small_model, complaints):
    vec = small_model.urgency.char_vec_
    assert vec is not None and vec.analyzer == "char_wb"
    fast = fastpath.FastCharTfidf.of(vec)
    assert fast is not None
    norm = normalize_many(complaints[0])
    assert fast.transform([]).shape == (0, len(vec.vocabulary_))  # (scikit-learn refuses an empty list)
    for texts in (norm, AWKWARD_CHARS, complaints[0][:40], norm[:1], norm[-1:]):
        mine, theirs = fast.transform(texts), vec.transform(texts)
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype and mine.indices.dtype == theirs.indices.dtype
        assert np.array_equal(mine.indptr, theirs.indptr) and np.array_equal(mine.indices, theirs.indices)
        assert np.array_equal(mine.data, theirs.data)
    assert fastpath.tfidf_transform(vec, norm[:3]).nnz == vec.transform(norm[:3]).nnz


def test_a_character_vectorizer_it_cannot_copy_goes_to_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["ไฟดับ ทั้งซอย", "น้ำท่วม ถนน", "ไฟดับ น้ำท่วม"]
    wide = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 30)).fit(texts)  # a 30-gram does not fit in 62 bits
    plain = TfidfVectorizer(analyzer="char", ngram_range=(2, 3)).fit(texts)  # not char_wb
    for vec in (wide, plain):
        assert fastpath.FastCharTfidf.of(vec) is None
        assert (fastpath.tfidf_transform(vec, texts) != vec.transform(texts)).nnz == 0
    small = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit(texts)
    got = fastpath.tfidf_transform(small, texts + ["ไฟ"])
    assert (got != small.transform(texts + ["ไฟ"])).nnz == 0


def test_a_featurizer_with_a_character_block_gives_scikit_learns_features(complaints):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    from triage.text import word_analyzer

    norm = normalize_many(complaints[0])
    union = FeatureUnion([("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True)),
                          ("word", TfidfVectorizer(analyzer=word_analyzer, min_df=2, sublinear_tf=True))]).fit(norm[:200])
    for texts in (norm, norm[:1], AWKWARD_CHARS):
        fast = fastpath.transform(union, texts, fastpath.Analyses()).tocsr()
        slow = union.transform(texts).tocsr()
        assert fast.shape == slow.shape and fast.dtype == slow.dtype
        assert np.array_equal(fast.indptr, slow.indptr) and np.array_equal(fast.indices, slow.indices)
        assert np.array_equal(fast.data, slow.data)


def test_all_topic_labels_in_one_product_score_as_each_label_does(small_model, complaints):
    X = small_model.featurizer.transform(normalize_many(complaints[0])).tocsr()
    S = small_model.topic.decision(X)
    for k, est in enumerate(small_model.topic.clf_.estimators_):
        if hasattr(est, "coef_"):
            assert np.array_equal(S[:, k], est.decision_function(X)), small_model.topic.labels[k]


def test_urgency_and_agency_probabilities_are_scikit_learns(small_model, complaints):
    texts = complaints[0]
    norm = normalize_many(texts)
    X = small_model.featurizer.transform(norm).tocsr()
    head = small_model.urgency
    found = [head.lexicon.matches(t) for t in norm]
    Z = head.design(norm, small_model.topic.proba(X), small_model.word_block(X), found)
    assert np.array_equal(fastpath.linear_proba(head.clf_, Z), head.clf_.predict_proba(Z))
    if small_model.agency is not None:
        fast = fastpath.agency_proba(small_model.agency, norm, fastpath.Analyses())
        assert np.array_equal(fast, small_model.agency.pipeline.predict_proba(norm))


def test_a_batch_predicts_what_one_at_a_time_and_the_plain_router_predict(small_model, complaints, router):
    texts, districts = complaints
    batch = predict(small_model, texts, districts, router)
    one = [predict(small_model, [t], [d], router)[0] for t, d in zip(texts[:60], districts[:60])]
    assert batch[:60] == one
    # the router asking the agency model itself, one complaint at a time (the path before batching)
    norm = normalize_many(texts)
    for i, rec in enumerate(batch):
        base = {k: v for k, v in rec.items() if k in ("topics", "topic_scores")}  # what the router reads
        plain = router.route(texts[i], norm[i], districts[i], base, small_model.agency)
        assert {k: rec[k] for k in plain} == plain, i


def test_the_design_matrix_is_scipys_hstack(small_model, complaints):
    from scipy import sparse

    rng = np.random.default_rng(0)
    dense = (rng.random((40, 7)) * (rng.random((40, 7)) > 0.5)).astype(np.float32)
    keep = np.ones(40, dtype=np.float32)
    keep[5] = 0  # an empty row
    X = (sparse.diags(keep) @ sparse.random(40, 50, density=0.1, format="csr", dtype=np.float32, random_state=1)).tocsr()
    X.eliminate_zeros()
    fast = fastpath.hstack_dense_csr(dense, X)
    slow = sparse.hstack([sparse.csr_matrix(dense), X]).tocsr()
    assert (fast != slow).nnz == 0 and np.array_equal(fast.indptr, slow.indptr)


@pytest.mark.parametrize("rows", [0, 1, 8, 40])
def test_the_urgency_design_in_one_pass_is_scipys_hstack_of_scaled_blocks(rows):
    from scipy import sparse

    rng = np.random.default_rng(rows)
    dense = (rng.random((rows, 7)) * (rng.random((rows, 7)) > 0.5)).astype(np.float32)
    keep = np.ones(rows, dtype=np.float32)
    keep[: min(rows, 2)] = 0  # empty rows
    words = (sparse.diags(keep) @ sparse.random(rows, 50, density=0.1, format="csr", dtype=np.float32,
                                                random_state=1)).tocsr()
    chars = sparse.random(rows, 30, density=0.2, format="csr", dtype=np.float32, random_state=2)
    empty = sparse.csr_matrix((rows, 5), dtype=np.float32)
    blocks = [(words, 0.5), (empty, 2.0), (chars, np.float32(3.0))]
    fast = fastpath.hstack_blocks(dense, blocks)
    slow = sparse.hstack([fastpath.hstack_dense_csr(dense, words * 0.5), empty * 2.0, chars * np.float32(3.0)],
                         format="csr")
    assert fast.shape == slow.shape == (rows, 7 + 50 + 5 + 30) and fast.dtype == slow.dtype
    assert np.array_equal(fast.indptr, slow.indptr) and np.array_equal(fast.indices, slow.indices)
    assert np.array_equal(fast.data, slow.data)


def test_a_matrix_made_without_the_constructors_checks_is_the_constructors():
    from scipy import sparse

    data, indices, indptr = np.array([1.0, 2.0, 3.0], np.float32), np.array([4, 1, 0], np.int32), np.array([0, 2, 2, 3],
                                                                                                          np.int32)
    mine, theirs = fastpath.csr(data, indices, indptr, (3, 6)), sparse.csr_matrix((data, indices, indptr), shape=(3, 6))
    assert type(mine) is type(theirs) and mine.shape == theirs.shape and mine.nnz == 3
    assert np.array_equal(mine.toarray(), theirs.toarray()) and not mine.has_sorted_indices
    mine.sort_indices()
    assert np.array_equal(mine.indices, [1, 4, 0]) and np.array_equal((mine @ np.ones(6)), [3.0, 0.0, 3.0])


def test_fast_path_caches_are_not_saved_with_the_model(small_model, complaints):
    small_model.predict(complaints[0][:5])
    assert b"FastTfidf" not in pickle.dumps(small_model) and b"ColumnPicker" not in pickle.dumps(small_model)


@pytest.mark.parametrize("empty", [[], [0], [39], [0, 1, 38, 39], list(range(40))])
def test_picking_columns_is_scipys_column_indexing(empty):
    from scipy import sparse

    keep = np.ones(40, dtype=np.float32)
    keep[empty] = 0  # empty rows, also first and last
    X = (sparse.diags(keep) @ sparse.random(40, 60, density=0.1, format="csr", dtype=np.float32, random_state=2)).tocsr()
    X.eliminate_zeros()
    cols = np.array([0, 3, 4, 17, 30, 59])
    fast = fastpath.ColumnPicker(cols, 60)(X)
    slow = X[:, cols].tocsr()
    assert fast.shape == slow.shape and (fast != slow).nnz == 0 and np.array_equal(fast.indptr, slow.indptr)


def test_an_agency_model_following_corrections_and_its_ranker_give_their_own_numbers(small_model, complaints, router):
    police = next(a.name for a in router.directory.agencies.values() if a.kind == "police")
    texts = complaints[0][:80]
    corrections = pd.DataFrame({"text": texts[:12], "agency": [police] * 12})
    learned = small_model.agency.learn_corrections(corrections, router)
    assert learned.memory_ is not None and len(learned.memory_)
    norm = normalize_many(texts)
    fast = fastpath.agency_proba(learned, norm, fastpath.Analyses())
    assert np.array_equal(fast, learned.kind_proba_many(norm))
    batch = fastpath.BatchKinds(learned, norm, fastpath.Analyses())
    for n in norm[:20]:
        assert batch.kind_proba(n) == learned.kind_proba(n)
        if learned.ranker_ is not None:
            assert batch.rank_proba(n) == learned.rank_proba(n)
