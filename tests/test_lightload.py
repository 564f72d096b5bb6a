"""A model loaded for prediction only (``registry.load(..., light=True)``, ``triage.lightload``) predicts what
the normally loaded model predicts, without importing scikit-learn or pandas."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from triage import fastpath, lightload, registry
from triage.prediction import predict
from triage.routing import Router
from triage.text import normalize_many


@pytest.fixture(scope="module")
def complaints(traffy_slice: Path) -> tuple[list[str], list[str | None]]:
    last = max((traffy_slice / "traffy").glob("*.parquet"))
    frame = pd.read_parquet(last, columns=["comment", "district"]).dropna(subset=["comment"]).sample(400, random_state=5)
    texts = frame["comment"].tolist() + ["ไฟดับ", "zzqxj", "ถนน" * 2000]
    return texts, [d if isinstance(d, str) else None for d in frame["district"]] + [None, "บางรัก", None]


def test_a_light_model_predicts_what_the_model_predicts(small_model_dir, small_model, complaints):
    light, meta = registry.load(small_model_dir / "current", light=True)
    assert meta["version"] == small_model.version
    assert lightload.light_name(light.featurizer) == "FeatureUnion"  # a stand-in, not scikit-learn's
    router = Router.load()
    texts, districts = complaints
    for part in (slice(0, 1), slice(0, 8), slice(0, None)):
        assert predict(light, texts[part], districts[part], router) == predict(small_model, texts[part],
                                                                               districts[part], router)
    assert lightload.light_name(light.featurizer) == "FeatureUnion"  # the fast path never needed the real class


def test_predicting_with_a_light_model_imports_neither_scikit_learn_nor_pandas(small_model_dir, tmp_path):
    script = (
        "import sys, json\n"
        "from triage import registry\n"
        "from triage.prediction import predict\n"
        "from triage.routing import Router\n"
        f"model, _ = registry.load({str(small_model_dir / 'current')!r}, light=True)\n"
        "preds = predict(model, ['ไฟฟ้าดับทั้งซอย สายไฟขาดห้อย', 'ขยะเต็มถนน'], ['บางรัก', None], Router.load())\n"
        "print(json.dumps({'n': len(preds), 'agencies': bool(preds[0]['agencies']),\n"
        "                  'loaded': sorted(m for m in ('sklearn', 'pandas', 'joblib') if m in sys.modules)}))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"n": 2, "agencies": True, "loaded": []}


def test_a_stand_in_becomes_the_real_object_when_asked_for_more(small_model_dir, small_model, complaints):
    light, _ = registry.load(small_model_dir / "current", light=True)
    norm = normalize_many(complaints[0][:50])
    union = light.featurizer
    X = union.transform(norm)  # a method only scikit-learn has: the stand-in turns into a FeatureUnion
    assert type(union) is type(small_model.featurizer) and lightload.light_name(union) is None
    assert (X != small_model.featurizer.transform(norm)).nnz == 0
    head = light.urgency.clf_
    copy = pickle.loads(pickle.dumps(head))  # pickled as the real object
    assert type(copy) is type(small_model.urgency.clf_)
    assert np.array_equal(copy.coef_, small_model.urgency.clf_.coef_)


def test_the_stand_in_vectorizer_splits_white_space_as_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    assert lightload.TfidfVectorizerStandIn._white_spaces.pattern == TfidfVectorizer._white_spaces.pattern
    assert lightload.TfidfVectorizerStandIn._white_spaces.flags == TfidfVectorizer._white_spaces.flags


def test_other_scikit_learn_classes_are_unpickled_for_real(tmp_path):
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    path = tmp_path / "s.pkl"
    path.write_bytes(pickle.dumps({"scaler": scaler}))
    with path.open("rb") as fh:
        loaded = lightload.load(fh)
    assert type(loaded["scaler"]) is StandardScaler and np.array_equal(loaded["scaler"].mean_, scaler.mean_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_normalisation_is_scikit_learns_bit_for_bit(dtype):
    from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

    rng = np.random.default_rng(0)
    for seed in range(40):
        X = sparse.random(200, 3000, density=rng.uniform(0.0005, 0.2), format="csr", dtype=dtype, random_state=seed)
        X.data = (rng.lognormal(size=X.nnz) * rng.choice([1e-25, 1.0, 1e12], size=X.nnz)).astype(dtype)
        X.data[: seed % 3] = 0.0  # zero entries, and (seed 0) rows whose squares sum to 0
        theirs, mine = X.copy(), X.copy()
        inplace_csr_row_normalize_l2(theirs)
        fastpath.normalize_rows_l2(mine)
        assert mine.data.dtype == theirs.data.dtype and mine.data.tobytes() == theirs.data.tobytes()
    empty = sparse.csr_matrix((3, 4), dtype=dtype)
    assert fastpath.normalize_rows_l2(empty).nnz == 0


def test_a_stand_in_pipeline_can_be_sliced_and_asked_for_probabilities(small_model_dir, small_model, complaints):
    light, _ = registry.load(small_model_dir / "current", light=True)
    if small_model.agency is None:
        pytest.skip("the slice model has no agency model")
    norm = normalize_many(complaints[0][:30])
    assert np.array_equal(light.agency.kind_proba_many(norm), small_model.agency.kind_proba_many(norm))
    assert (light.agency.features(norm) != small_model.agency.features(norm)).nnz == 0  # pipeline[:-1]
