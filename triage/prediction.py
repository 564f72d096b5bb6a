"""The prediction record, and the one predict path shared by batch prediction and the service.

``predict(model, texts, districts, router)`` normalises the texts once, asks the model for topics
and urgency (``TriageModel.predict``), then, as a separate step, asks the router for agencies
(``Router.route``). The model never calls the router and the router never calls the model: the
router gets the prediction record and the model's learned agency model as values.

``Prediction`` lists every key a record may carry; ``STORED_KEYS`` are the ones a stored case
keeps (``triage.cases``) and the API returns (``triage.schemas.PredictionOut``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypedDict, cast

from triage.text import normalize_many


class Token(TypedDict):
    token: str
    weight: float


class Candidate(TypedDict):
    agency: str
    score: float


class _TopicPart(TypedDict):
    topics: list[str]
    topic_scores: dict[str, float]
    explanation: list[Token]


class Prediction(_TopicPart, total=False):
    """One complaint's prediction: topics always; urgency when the model has the head; agencies after routing."""

    urgency: str
    urgency_scores: dict[str, float]
    urgency_cues: list[str]
    agencies: list[str]
    agency_scores: dict[str, float]
    agency_kinds: list[str]
    agency_needs_review: bool
    agency_candidates: list[Candidate]
    agency_explanation: dict[str, Any]


STORED_KEYS: tuple[str, ...] = ("topics", "topic_scores", "urgency", "urgency_scores", "urgency_cues", "agencies",
                                "agency_scores", "agency_candidates", "agency_explanation", "explanation")
"""What a stored case keeps of its prediction (``agency_kinds`` and the review flag are not kept)."""


class Predictor(Protocol):
    """What the predict path needs of a model (``triage.model.TriageModel``)."""

    agency: Any

    def predict(self, texts: list[str], districts: list[str | None] | None = None,
                norm: list[str] | None = None) -> list[Prediction]: ...


class Routes(Protocol):
    """What the predict path needs of a router (``triage.routing.Router``)."""

    def route(self, text: str, norm: str, district: str | None, prediction: dict[str, Any],
              learned: Any = None) -> dict[str, Any]: ...


def predict(model: Predictor, texts: list[str], districts: Sequence[str | None] | None = None,
            router: Routes | None = None) -> list[Prediction]:
    """Triage raw texts: the model's topics and urgency, then (with a router) agencies, one record per text."""
    norm = normalize_many(texts)
    district_list = list(districts) if districts is not None else None
    preds = model.predict(texts, district_list, norm=norm)
    if router is not None:
        for i, pred in enumerate(preds):
            district = district_list[i] if district_list is not None else None
            routed = router.route(texts[i], norm[i], district, cast(dict[str, Any], pred), model.agency)
            cast(dict[str, Any], pred).update(routed)
    return preds


def stored(pred: Prediction) -> dict[str, Any]:
    """The part of a prediction a case keeps (missing keys as None, like the stored cases before)."""
    record = cast(dict[str, Any], pred)
    return {k: record.get(k) for k in STORED_KEYS}
