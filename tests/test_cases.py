"""The case service's rules on real SQLite files and the shipped routing directory (no trained model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store import record

from triage.cases import Cases, check_agency, metrics_summary, move_agency, review_reasons, urgency_rank
from triage.errors import ConflictError, InputError, LabelError, StaleError
from triage.prediction import Prediction
from triage.routing import Router
from triage.serving import Served
from triage.store import SQLiteStore

CENTRAL = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"
LEVELS = ["high", "medium", "low"]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


@pytest.fixture()
def cases(tmp_path: Path, router: Router):
    store = SQLiteStore(tmp_path / "cases.db")
    # the move and correction rules read only the router of the served snapshot, not the model
    yield Cases(store, Served(None, {}, router, tmp_path, "now"), escalation_agency=CENTRAL)
    store.close()


def test_urgency_rank_puts_unknown_last():
    assert [urgency_rank(LEVELS, u) for u in ("high", "medium", "low", None, "other")] == [0, 1, 2, 3, 3]


def test_forwarding_needs_an_agency_and_escalation_defaults_to_the_central_level():
    with pytest.raises(InputError, match="forwarded"):
        move_agency("forwarded", None, CENTRAL)
    assert move_agency("escalated", None, CENTRAL) == CENTRAL
    assert move_agency("escalated", "สำนักงานเขตบางรัก", CENTRAL) == "สำนักงานเขตบางรัก"
    assert move_agency("assigned", None, CENTRAL) is None
    with pytest.raises(InputError, match="not one of"):
        move_agency("teleported", None, CENTRAL)


def test_agencies_must_be_in_the_directory(router):
    names = router.agency_names
    check_agency(names, "สำนักงานเขตบางรัก")
    check_agency(None, "anything goes without a directory")
    check_agency(names, CENTRAL, also=CENTRAL)
    with pytest.raises(LabelError, match="not one of"):
        check_agency(names, "กรมที่ไม่มีอยู่จริง")


def test_move_through_the_service(cases):
    (case, _), = cases.store.create_cases([record()])
    escalated = cases.move(case["id"], "escalated", None, "s", None)
    assert escalated["agency"] == CENTRAL and escalated["status"] == "escalated"
    with pytest.raises(LabelError):
        cases.move(case["id"], "forwarded", "กรมที่ไม่มีอยู่จริง", "s", None)
    forwarded = cases.move(case["id"], "forwarded", "สำนักงานเขตพญาไท", "s", None)
    assert forwarded["agency_path"][-2:] == [CENTRAL, "สำนักงานเขตพญาไท"]
    with pytest.raises(ConflictError, match="loop"):
        cases.move(case["id"], "forwarded", CENTRAL, "s", None)
    with pytest.raises(StaleError):
        cases.move(case["id"], "resolved", None, "s", None, version=case["updated_at"])
    assert cases.store.get_case(case["id"])["status"] == "forwarded"
    resolved = cases.move(case["id"], "resolved", None, "s", None, version=forwarded["updated_at"])
    assert resolved["status"] == "resolved"


def test_review_reasons(cases):
    pred: Prediction = {"topics": ["ถนน"], "topic_scores": {"ถนน": 0.9}, "explanation": [], "urgency": "medium",
                        "agencies": ["สำนักงานเขตบางรัก"], "agency_needs_review": False}
    store = cases.store
    assert review_reasons(pred, LEVELS, 0.5, store) == []
    assert review_reasons(pred, LEVELS, 0.95, store) == ["low_confidence"]
    assert review_reasons({**pred, "urgency": "high"}, LEVELS, 0.5, store) == ["urgent_not_accepted"]
    assert review_reasons({**pred, "agency_needs_review": True}, LEVELS, 0.5, store) == ["agency_uncertain"]
    (case, _), = store.create_cases([record(topics=["ถนน"], prediction={"topics": ["ถนน"],
                                                                         "agencies": ["สำนักงานเขตบางรัก"]})])
    store.add_correction(case["id"], "r", "wrong office", None, None, None, ["สำนักการโยธา กทม."])
    assert review_reasons(pred, LEVELS, 0.5, store) == ["agency_corrected_before"]
    assert review_reasons({**pred, "topics": ["ขยะ"]}, LEVELS, 0.5, store) == []


def test_metrics_summary_keeps_headline_numbers_only():
    metrics = {"split": "time", "topic": {"test": {"micro_f1": 0.8, "macro_f1": 0.7, "rows": 10, "labels_scored": 3,
                                                   "per_label": {"a": {}}}, "calibration": {"ece": 0.01}},
               "urgency": {"cross_validated": {"high_recall": 0.9, "confusion": [[1]]}, "high_threshold": 0.2}}
    assert metrics_summary(metrics) == {
        "split": "time", "topic": {"micro_f1": 0.8, "macro_f1": 0.7, "rows": 10, "labels_scored": 3, "ece": 0.01},
        "urgency": {"cross_validated": {"high_recall": 0.9}, "high_threshold": 0.2}}
