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

from triage.fastpath import Analyses, BatchKinds
from triage.text import normalize_many

PREDICT_CHUNK = 2000
"""``predict`` works through longer inputs in parts of this many texts."""


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
                norm: list[str] | None = None, analyses: Analyses | None = None) -> list[Prediction]: ...


class Routes(Protocol):
    """What the predict path needs of a router (``triage.routing.Router``)."""

    def route(self, text: str, norm: str, district: str | None, prediction: dict[str, Any],
              learned: Any = None) -> dict[str, Any]: ...


def predict(model: Predictor, texts: list[str], districts: Sequence[str | None] | None = None,
            router: Routes | None = None) -> list[Prediction]:
    """Triage raw texts: the model's topics and urgency, then (with a router) agencies, one record per text.

    One pass over the text: normalised once, each text's words analysed once for the model's features
    and its agency model's (``fastpath.Analyses``), whose kind probabilities are computed for the whole
    batch at once (``fastpath.BatchKinds``) before the router asks for them complaint by complaint.
    Longer inputs go in parts of PREDICT_CHUNK texts (bounds the memory of the analyses).
    """
    district_list = list(districts) if districts is not None else None
    if len(texts) > PREDICT_CHUNK:
        return [pred for s in range(0, len(texts), PREDICT_CHUNK)
                for pred in predict(model, texts[s : s + PREDICT_CHUNK],
                                    district_list[s : s + PREDICT_CHUNK] if district_list is not None else None, router)]
    norm = normalize_many(texts)
    analyses = Analyses()
    preds = model.predict(texts, district_list, norm=norm, analyses=analyses)
    if router is not None:
        learned = BatchKinds(model.agency, norm, analyses) if model.agency is not None else None
        for i, pred in enumerate(preds):
            district = district_list[i] if district_list is not None else None
            routed = router.route(texts[i], norm[i], district, cast(dict[str, Any], pred), learned)
            cast(dict[str, Any], pred).update(routed)
    return preds


def stored(pred: Prediction) -> dict[str, Any]:
    """The part of a prediction a case keeps (missing keys as None, like the stored cases before)."""
    record = cast(dict[str, Any], pred)
    return {k: record.get(k) for k in STORED_KEYS}
