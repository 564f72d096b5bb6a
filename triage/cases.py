"""The case workflow: triage into stored cases, corrections, status changes and their rules.

Plain code over a case store (``triage.store.Store``) and the served model
(``triage.serving.Served``), with no web framework: the JSON API (``triage.api``) and the review
pages (``triage.review``) both call ``Cases`` and these functions, and nothing of each other.
The rules live here, once:

- why a case goes to review (``review_reasons``) and how urgent it ranks (``urgency_rank``);
- which labels and agencies a correction or a move may use (``check_labels``, ``check_agency``);
- forwarding needs an agency, escalation defaults to the central level (``move_agency``); the
  allowed transitions and the forwarding-loop check are the store's (``triage.store.TRANSITIONS``);
- what an agency key may see and do (``own_case``, ``check_agency_move``): only its agency's cases,
  and only accept, in progress, forward, escalate, resolve;
- what of a model's metrics is shown (``metrics_summary``).

Raw complaint text and reporter contacts never reach a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from triage.auth import agency_of
from triage.errors import ConflictError, ForbiddenError, InputError, LabelError, NotFoundError, TooLargeError
from triage.prediction import Prediction, predict, stored
from triage.security import log_safe, scrub_prediction
from triage.serving import Served
from triage.store import STATUSES, ReviewStore
from triage.text import has_letters, mask_personal

log = logging.getLogger("triage.cases")

REVIEW_REASONS = ("low_confidence", "urgent_not_accepted", "agency_uncertain", "agency_corrected_before")


class Complaint(Protocol):
    """A complaint to triage (``triage.schemas.ComplaintIn`` is one)."""

    text: str
    district: str | None
    source: str | None
    external_id: str | None
    reporter_contact: str | None


# -- rules ----------------------------------------------------------------------------------------

def urgency_rank(levels: Sequence[str], urgency: str | None) -> int:
    """A level's position in the model's levels, most urgent first (0); unknown or none ranks last."""
    if urgency is None or urgency not in levels:
        return len(levels)
    return list(levels).index(urgency)


def review_reasons(pred: Prediction, levels: Sequence[str], threshold: float, store: ReviewStore) -> list[str]:
    """Why a freshly triaged complaint needs a person (empty: it does not)."""
    reasons = []
    scores = pred.get("topic_scores") or {}
    if not scores or max(scores.values()) < threshold:
        reasons.append("low_confidence")
    if levels and pred.get("urgency") == levels[0]:
        reasons.append("urgent_not_accepted")
    if pred.get("agency_needs_review"):
        reasons.append("agency_uncertain")
    topics, agencies = pred.get("topics") or [], pred.get("agencies") or []
    if topics and agencies and store.agency_corrected_before(topics[0], agencies[0]):
        reasons.append("agency_corrected_before")
    return reasons


def check_text(text: str, max_chars: int, where: str = "") -> None:
    """Refuse a complaint text that is too long, empty, or has nothing to triage."""
    if len(text) > max_chars:
        raise TooLargeError(f"{where}text has {len(text)} characters; at most {max_chars} are allowed "
                            "(TRIAGE_MAX_TEXT_CHARS)")
    if not text.strip():
        raise InputError(f"{where}text is empty or only whitespace; send the complaint's words")
    if not has_letters(text):
        raise InputError(f"{where}text has no letters or digits to triage")


def check_labels(model: Any, topics: list[str] | None, urgency: str | None) -> None:
    """Raise LabelError for a topic or urgency level that is not in the served model's label sets."""
    for topic in topics or []:
        if topic not in model.topic_labels:
            raise LabelError("topic", topic, model.topic_labels)
    if urgency is not None and urgency not in model.urgency_levels:
        raise LabelError("urgency", urgency, model.urgency_levels)


def allowed_agencies(router: Any) -> set[str] | None:
    """The agency names a correction or move may use: the router's directory, or None (any name) if it has none."""
    names = getattr(router, "agency_names", None)
    if names is None:
        return None
    return set(names() if callable(names) else names)


def check_agency(names: set[str] | None, agency: str, also: str | None = None) -> None:
    """Raise LabelError when ``agency`` is not in the directory ``names`` (None: any name) nor ``also``."""
    if names is not None and agency not in names and agency != also:
        raise LabelError("agency", agency, sorted(names))


def move_agency(status: str, agency: str | None, escalation_agency: str) -> str | None:
    """The agency a status change names: forwarding needs one; escalating defaults to the central level."""
    if status not in STATUSES:
        raise InputError(f"status {status!r} is not one of: {', '.join(STATUSES)}")
    if status == "escalated" and agency is None:
        return escalation_agency
    if status == "forwarded" and agency is None:
        raise InputError("status 'forwarded' needs 'agency': the agency the case goes to")
    return agency


AGENCY_STATUSES = ("assigned", "in_progress", "forwarded", "escalated", "resolved")
"""The steps an agency key may take: accept, in progress, forward, escalate, resolve."""


def own_case(role: str | None, case: dict[str, Any]) -> dict[str, Any]:
    """The case, if this role may see it; an agency key gets NotFoundError for another agency's case
    (so a key cannot probe which cases exist)."""
    agency = agency_of(role)
    if agency is not None and case.get("agency") != agency:
        raise NotFoundError(f"case {case['id']} does not exist")
    return case


def check_agency_move(role: str | None, status: str) -> None:
    """Refuse (403) a workflow step an agency key may not take."""
    if agency_of(role) is not None and status not in AGENCY_STATUSES:
        raise ForbiddenError(f"an agency key may not set status {status!r}; it may set: {', '.join(AGENCY_STATUSES)}")


def metrics_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a model's metrics (no per-example texts)."""
    out: dict[str, Any] = {"split": metrics.get("split")}
    topic = metrics.get("topic", {})
    if "test" in topic:
        t = topic["test"]
        out["topic"] = {k: t.get(k) for k in ("micro_f1", "macro_f1", "rows", "labels_scored")}
        out["topic"]["ece"] = topic.get("calibration", {}).get("ece")
    urgency = metrics.get("urgency")
    if urgency:
        out["urgency"] = {name: {k: v for k, v in part.items() if k != "confusion"}
                          for name, part in urgency.items() if isinstance(part, dict)}
        out["urgency"]["high_threshold"] = urgency.get("high_threshold")
    return out


# -- the service ----------------------------------------------------------------------------------

@dataclass
class Cases:
    """The case workflow over one store and one snapshot of the served model (one per request)."""

    store: ReviewStore
    served: Served
    review_threshold: float = 0.5
    escalation_agency: str = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"
    max_text_chars: int = 10_000
    notify: Callable[[], None] | None = None
    """Called after every status change (wakes the webhook delivery)."""

    @property
    def agency_names(self) -> set[str] | None:
        return allowed_agencies(self.served.router)

    def rank(self, urgency: str | None) -> int:
        return urgency_rank(self.served.model.urgency_levels, urgency)

    def triage(self, items: Sequence[Complaint]) -> list[tuple[dict[str, Any], bool]]:
        """Triage complaints and store each as a case (all or none): ``(case, created)`` in input order.

        A complaint whose ``external_id`` is already a case returns that case (``created`` False);
        the same id with a different text is a ConflictError.
        """
        started = time.perf_counter()
        for i, item in enumerate(items):
            check_text(item.text, self.max_text_chars, f"items[{i}]." if len(items) > 1 else "")
        known: dict[int, dict[str, Any]] = {}
        for i, item in enumerate(items):
            if item.external_id is not None:
                case = self.store.find_external(item.external_id)
                if case is not None:
                    if case["text"] != item.text:
                        raise ConflictError(f"external_id {item.external_id!r} is already case {case['id']} with a "
                                            "different text; a retry must send the same complaint")
                    known[i] = case
        todo = [i for i in range(len(items)) if i not in known]
        created = self.store.create_cases(self._records([items[i] for i in todo]))
        fresh = iter(created)
        results = [(known[i], False) if i in known else next(fresh) for i in range(len(items))]
        self._log(results, started, len(items))
        return results

    def triage_each(self, items: Sequence[Complaint]) -> list[tuple[dict[str, Any], bool] | Exception]:
        """Triage independent requests together (a micro-batch): each gets ``(case, created)`` or its own error.

        Predicted in one call and stored in one transaction (group commit, ``Store.create_cases_each``);
        one complaint's problem (its external_id is a case with another text) fails it alone. Texts
        must have been checked (``check_text``) by the caller. Every returned case is committed.
        """
        started = time.perf_counter()
        out: list[tuple[dict[str, Any], bool] | Exception | None] = [None] * len(items)
        todo: list[int] = []
        for i, item in enumerate(items):
            case = self.store.find_external(item.external_id) if item.external_id is not None else None
            if case is None:
                todo.append(i)
            elif case["text"] != item.text:
                out[i] = ConflictError(f"external_id {item.external_id!r} is already case {case['id']} with a "
                                       "different text; a retry must send the same complaint")
            else:
                out[i] = (case, False)
        for i, result in zip(todo, self.store.create_cases_each(self._records([items[i] for i in todo]))):
            out[i] = result
        done = [r for r in out if r is not None]
        self._log([r for r in done if not isinstance(r, Exception)], started, len(items))
        return done

    def _records(self, items: Sequence[Complaint]) -> list[dict[str, Any]]:
        """Predict the complaints in one call; each one's case record for the store."""
        model = self.served.model
        preds = predict(model, [item.text for item in items], [item.district for item in items],
                        self.served.router) if items else []
        records = []
        for item, pred in zip(items, preds):
            reasons = review_reasons(pred, model.urgency_levels, self.review_threshold, self.store)
            records.append({
                "text": item.text, "masked_text": mask_personal(item.text), "district": item.district,
                "source": item.source, "external_id": item.external_id, "reporter_contact": item.reporter_contact,
                "model_version": model.version, "prediction": scrub_prediction(stored(pred), item.text),
                "topics": pred["topics"], "urgency": pred.get("urgency"), "urgency_rank": self.rank(pred.get("urgency")),
                "agencies": pred.get("agencies") or [], "needs_review": bool(reasons), "review_reasons": reasons,
            })
        return records

    @staticmethod
    def _log(results: list[tuple[dict[str, Any], bool]], started: float, batch: int) -> None:
        ms = (time.perf_counter() - started) * 1000
        for case, new in results:
            log.info("case %d %s model %s topics %s urgency %s review %s (%.1f ms, batch of %d)", case["id"],
                     "created" if new else "existing", case["model_version"], case["topics"], case["urgency"],
                     case["review_reasons"], ms, batch)

    def correct(self, case_id: int, reviewer: str, reason: str, topics: list[str] | None, urgency: str | None,
                agencies: list[str] | None, version: str | None = None) -> dict[str, Any]:
        """Record a correction (audit trail); the labels must be the model's and agencies the directory's.

        With ``version`` (a form's), only if the case is still at it, else StaleError.
        """
        check_labels(self.served.model, topics, urgency)
        names = self.agency_names
        for agency in agencies or []:
            check_agency(names, agency)
        rank = self.rank(urgency) if urgency is not None else None
        if version is None:
            case = self.store.add_correction(case_id, reviewer, reason, topics, urgency, rank, agencies)
        else:
            case = self.store.correct_at_version(case_id, version, reviewer, reason, topics, urgency, rank, agencies)
        log.info("case %d corrected by %s: %s", case_id, log_safe(reviewer),
                 ", ".join(k for k, v in (("topics", topics), ("urgency", urgency), ("agencies", agencies))
                           if v is not None))
        return case

    def accept(self, case_id: int, version: str, reviewer: str, reason: str) -> dict[str, Any] | None:
        """Confirm a case's current topics and urgency as they are (the case leaves the queue).

        None when the case has no labels to confirm; StaleError when it moved on since ``version``.
        """
        case = self.store.get_case(case_id)
        urgency = case["urgency"]
        if not case["topics"] and urgency is None:
            return None
        rank = self.rank(urgency) if urgency is not None else None
        out = self.store.correct_at_version(case_id, version, reviewer, reason, case["topics"] or None, urgency, rank, None)
        log.info("case %d accepted as predicted by %s", case_id, log_safe(reviewer))
        return out

    def move(self, case_id: int, status: str, agency: str | None, actor: str, note: str | None,
             version: str | None = None, *, public_note: str | None = None, role: str | None = None) -> dict[str, Any]:
        """Move a case on its workflow: forward (needs an agency), escalate (default: the central level), ...

        ``note`` is internal, ``public_note`` goes to the complainant (tracking page, webhook). Impossible
        steps and forwarding loops are a ConflictError (from the store); with ``version`` a case that
        moved on since is a StaleError. An agency ``role`` moves only its own cases (else NotFoundError),
        only by ``AGENCY_STATUSES`` (else ForbiddenError), and only as the case was when it was checked.
        """
        check_agency_move(role, status)
        if agency_of(role) is not None:
            version = version or own_case(role, self.store.get_case(case_id))["updated_at"]
        agency = move_agency(status, agency, self.escalation_agency)
        if agency is not None:
            check_agency(self.agency_names, agency, also=self.escalation_agency)
        if version is None:
            case = self.store.change_status(case_id, status, agency, actor, note, public_note=public_note)
        else:
            case = self.store.change_status_at_version(case_id, version, status, agency, actor, note,
                                                       public_note=public_note)
        if self.notify is not None:
            self.notify()
        log.info("case %d -> %s (%s)", case_id, status, log_safe(actor))
        return case
