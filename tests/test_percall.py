"""A lone complaint (a batch of one, the one-client request) takes the fast path's one-row branches: its numbers
must be the batch path's bit for bit, on real complaints of the slice, with the session's real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from triage import fastpath
from triage.prediction import predict
from triage.routing import Router
from triage.text import normalize_many

AWKWARD = ["", " ", "ไฟดับ", "5555 ค่ะะะะ ๆๆๆ", "ok", "zzqxj qqzzv", "😀 ไฟ 😀", "ถนน" * 2000, "a\u200bb 081-234-5678"]


@pytest.fixture(scope="module")
def texts(traffy_slice: Path) -> list[str]:
    """300 real complaints of the slice's last month and a few awkward ones (empty, unknown words, very long)."""
    last = max((traffy_slice / "traffy").glob("*.parquet"))
    frame = pd.read_parquet(last, columns=["comment"]).dropna(subset=["comment"])
    return frame["comment"].sample(300, random_state=11).tolist() + AWKWARD


def same_csr(a: sparse.csr_matrix, b: sparse.csr_matrix) -> bool:
    a, b = a.tocsr(), b.tocsr()
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and a.data.tobytes() == b.data.tobytes())


def test_one_row_matrices_equal_the_batch_rows(small_model, texts):
    norm = normalize_many(texts)
    analyses = fastpath.Analyses()
    X = fastpath.transform(small_model.featurizer, norm, analyses).tocsr()
    S = small_model.topic.decision(X)
    P = small_model.topic.proba(X)
    head = small_model.urgency
    found = [head.lexicon.matches(t) for t in norm]
    Z = head.design(norm, P, small_model.word_block(X), found)
    U = head.proba(Z)
    cue = head.high_cue(Z)
    chars = fastpath.tfidf_transform(head.char_vec_, norm)
    assert X.shape[0] == len(texts) and Z.nnz > 0 and cue.sum() > 0  # the cue branch is exercised
    for i, t in enumerate(norm):
        one = fastpath.Analyses()
        x = fastpath.transform(small_model.featurizer, [t], one).tocsr()
        assert same_csr(x, X[i]), i
        assert small_model.topic.decision(x).tobytes() == S[i : i + 1].tobytes(), i
        p = small_model.topic.proba(x)
        assert p.tobytes() == P[i : i + 1].tobytes(), i
        assert same_csr(fastpath.tfidf_transform(head.char_vec_, [t]), chars[i]), i
        z = head.design([t], p, small_model.word_block(x), [found[i]])
        assert same_csr(z, Z[i]), i
        assert head.proba(z).tobytes() == U[i : i + 1].tobytes(), i
        assert head.high_cue(z).tolist() == cue[i : i + 1].tolist(), i


def test_one_complaint_predicts_what_the_batch_does(small_model, texts):
    router = Router.load()
    districts = ["บางรัก", None, "ปทุมวัน"] * (len(texts) // 3 + 1)
    batch = predict(small_model, texts, districts[: len(texts)], router)
    alone = [pred for i, t in enumerate(texts) for pred in predict(small_model, [t], [districts[i]], router)]
    assert alone == batch
    if small_model.agency is not None:  # the agency model's kind probabilities, one at a time and batched
        norm = normalize_many(texts)
        kinds = fastpath.BatchKinds(small_model.agency, norm, fastpath.Analyses())
        for t in norm[:60] + norm[-len(AWKWARD):]:
            one = fastpath.BatchKinds(small_model.agency, [t], fastpath.Analyses())
            assert one.kind_proba(t) == kinds.kind_proba(t)
            if kinds._rank is not None:
                assert one.rank_proba(t) == kinds.rank_proba(t)


def test_one_row_l2_normalisation_is_scikit_learns():
    from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

    rng = np.random.default_rng(9)
    for n in (0, 1, 2, 7, 300, 5000):
        for dtype in (np.float32, np.float64):
            data = (rng.random(n) * 10.0 ** rng.integers(-5, 5, size=n)).astype(dtype)
            X = sparse.csr_matrix((data, np.arange(n), [0, n]), shape=(1, max(n, 1)))
            theirs = X.copy()
            inplace_csr_row_normalize_l2(theirs)
            assert fastpath.normalize_rows_l2(X.copy()).data.tobytes() == theirs.data.tobytes()


def test_the_batch_explanations_are_each_rows_explanation_for_every_label(small_model, texts):
    """``explain_rows`` (a batch's explanations, one product per label) gives ``explain``'s list for every row and
    every label it might be asked about, weights and order included."""
    norm = normalize_many(texts)
    X = fastpath.transform(small_model.featurizer, norm, fastpath.Analyses()).tocsr()
    P = small_model.topic.proba(X)
    tops = np.argsort(-P, axis=1)[:, 0].tolist()
    assert small_model.explain_rows(X, tops) == [small_model.explain(X, i, k) for i, k in enumerate(tops)]
    rows = list(range(0, len(texts), 7)) + [len(texts) - k for k in range(1, len(AWKWARD) + 1)]
    for k in range(len(small_model.topic.labels)):
        assert small_model.explain_rows(X[rows], [k] * len(rows)) == [small_model.explain(X, i, k) for i in rows], k
    assert any(small_model.explain_rows(X, tops))
