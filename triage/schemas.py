"""Request and response models of the HTTP API, split by role, with limits on sizes and counts.

Hard ceilings live here (they show in the OpenAPI schema); the configurable limits (text length,
batch size) are checked by the API against ``Settings``. Label values are checked against the
served model's label sets by the API, not here: label sets come from the model, not from code.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from triage.security import check_name
from triage.store import STATUSES


def _unicode_clean(value: str) -> str:
    """Refuse strings that cannot be stored or sent as UTF-8 (lone surrogates from ``\\ud800`` escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains a character that is not valid Unicode at position {exc.start}") from exc
    return value


def _stripped_nonempty(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or only whitespace")
    return value


Clean = Annotated[str, AfterValidator(_unicode_clean)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_unicode_clean),
                 AfterValidator(_stripped_nonempty)]
Short = Annotated[str, Field(max_length=200), AfterValidator(_unicode_clean)]
PersonName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_unicode_clean),
                       AfterValidator(check_name), AfterValidator(_stripped_nonempty)]
"""Who did something (reviewer, actor): one line, no control characters, so it cannot forge a log line."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ComplaintIn(_In):
    """One complaint as an intake system sends it."""

    text: Annotated[str, Field(max_length=100_000, description="The complaint as written (Thai, any length up to "
                                                               "the configured limit, 10,000 characters by default)"),
                    AfterValidator(_unicode_clean)]
    district: Short | None = Field(None, description="District (เขต) if known, e.g. บางรัก")
    source: Annotated[str, Field(max_length=50), AfterValidator(_unicode_clean)] | None = Field(
        None, description="Channel: line, hotline 1567, web, ...")
    external_id: Name | None = Field(None, description="The intake system's id; the same id posted again returns "
                                                       "the same case, so retries are safe")
    reporter_contact: Short | None = Field(None, description="Stored with the case, never logged or exported")

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "ไฟฟ้าดับทั้งซอย สายไฟช็อตมีประกายไฟ", "district": "บางรัก", "external_id": "line-123"}]})


class BatchIn(_In):
    items: list[ComplaintIn] = Field(min_length=1, max_length=10_000)


class Token(BaseModel):
    token: str
    weight: float


class TriageOut(BaseModel):
    """The triage of one complaint, and the case that stores it."""

    case_id: int
    external_id: str | None
    created: bool = Field(description="False when the external_id was known and the stored case is returned")
    topics: list[str]
    topic_scores: dict[str, float]
    urgency: str | None
    urgency_scores: dict[str, float]
    urgency_cues: list[str] = []
    agencies: list[str]
    agency_scores: dict[str, float] = {}
    agency_candidates: list[AgencyCandidate] = []
    agency_explanation: dict[str, Any] = {}
    needs_review: bool
    review_reasons: list[str]
    explanation: list[Token]
    model_version: str
    status: str
    tracking_code: str | None = Field(None, description="Give it to the complainant: GET /v1/track/{code} and the "
                                                         "page /track/{code} show where the case stands")


class BatchOut(BaseModel):
    results: list[TriageOut]


class CorrectionIn(_In):
    """A reviewer's correction: any of topics, urgency, agencies, with who and why."""

    reviewer: PersonName
    reason: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_unicode_clean),
                      AfterValidator(_stripped_nonempty)]
    topics: list[Name] | None = Field(None, min_length=1, max_length=20)
    urgency: Name | None = None
    agencies: list[Name] | None = Field(None, min_length=1, max_length=10)

    @model_validator(mode="after")
    def _something(self) -> CorrectionIn:
        if self.topics is None and self.urgency is None and self.agencies is None:
            raise ValueError("a correction needs at least one of: topics, urgency, agencies")
        return self


class StatusIn(_In):
    """A step in the case workflow, e.g. forward to another agency, escalate, resolve with a note."""

    status: str = Field(description=f"one of: {', '.join(STATUSES)}")
    actor: PersonName
    agency: Name | None = Field(None, description="Needed to forward; escalation defaults to the central level")
    note: Annotated[str, Field(max_length=2000), AfterValidator(_unicode_clean)] | None = Field(
        None, description="Internal: staff and agencies see it, the complainant never does")
    public_note: Annotated[str, Field(max_length=2000), AfterValidator(_unicode_clean)] | None = Field(
        None, description="Shown on the complainant's tracking page and sent in the webhook event")

    @model_validator(mode="after")
    def _known(self) -> StatusIn:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of: {', '.join(STATUSES)}")
        return self


class AgencyCandidate(BaseModel):
    agency: str
    score: float


class PredictionOut(BaseModel):
    topics: list[str]
    topic_scores: dict[str, float]
    urgency: str | None = None
    urgency_scores: dict[str, float] = {}
    agencies: list[str] = []
    agency_scores: dict[str, float] = {}
    agency_candidates: list[AgencyCandidate] = Field(
        [], description="When the router is unsure: the agencies a reviewer should choose from, with scores")
    agency_explanation: dict[str, Any] = Field(
        {}, description="What the routing table's rules and the learned agency model each contributed")
    explanation: list[Token] = []


class CaseOut(BaseModel):
    """A stored case as reviewers see it: masked text, the model's prediction and the current labels."""

    id: int
    external_id: str | None
    status: str
    created_at: str
    updated_at: str
    masked_text: str
    text: str | None = Field(None, description="The raw text, for reviewers and admins only")
    reporter_contact: str | None = Field(None, description="How to reach the complainant, for admins only")
    district: str | None
    source: str | None
    model_version: str
    prediction: PredictionOut
    topics: list[str]
    urgency: str | None
    agencies: list[str]
    agency: str | None = Field(description="The agency that holds the case now")
    agency_path: list[str]
    needs_review: bool
    review_reasons: list[str]
    corrected: bool
    tracking_code: str | None = None
    deadline: str | None = Field(None, description="When the current agency must have resolved it (TRIAGE_SLA_HOURS)")
    overdue: bool = False


class CaseList(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None


class QueueOut(BaseModel):
    items: list[CaseOut]
    total: int


class EventOut(BaseModel):
    at: str
    kind: str
    from_status: str | None
    to_status: str | None
    agency: str | None
    actor: str | None
    note: str | None
    public_note: str | None = Field(None, description="What the complainant's tracking page shows of this step")
    reason: str | None = Field(None, description="Why the system took the step: overdue (automatic escalation), "
                                                 "reopened (by the complainant)")


class HistoryOut(BaseModel):
    case_id: int
    status: str
    agency: str | None
    events: list[EventOut]


class ModelOut(BaseModel):
    """The served model: its version names it; the server's file paths are not shown."""

    version: str
    created: str | None
    labels: dict[str, list[str]]
    metrics: dict[str, Any]
    loaded_at: str


class TrackStep(BaseModel):
    at: str
    status: str
    agency: str | None
    note: str | None = Field(description="Only what staff marked public")


class TrackOut(BaseModel):
    """What anyone holding the tracking code sees: no text, contact, internal notes, staff names."""

    status: str
    agency: str | None
    updated_at: str
    deadline: str | None
    steps: list[TrackStep]


class FeedbackIn(_In):
    """The complainant's rating of a resolved case."""

    stars: int = Field(ge=1, le=5)
    comment: Annotated[str, Field(max_length=2000), AfterValidator(_unicode_clean)] | None = None
    reopen: bool = False


class ErrorOut(BaseModel):
    error: str
    detail: Any = None
