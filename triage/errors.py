"""The exception tree of triage, and the one mapping from it to HTTP statuses and exit codes.

    TriageError                 base of everything the package raises on purpose       500 / 1
    ├── ConfigError             a bad setting, dataset config, directory or routing table  500 / 2
    ├── DataError               a data file that cannot be read or lacks a needed column   422 / 2
    ├── ModelError              no model, or a corrupt, mismatched or unfitted artifact    503 / 3
    ├── InputError              a complaint or request the service cannot take             422 / 2
    │   └── TooLargeError       a request over a configured size limit                     413 / 2
    ├── LabelError              a label that is not in the model's or directory's set      422 / 2
    ├── NotFoundError           a case (or other record) that does not exist               404 / 1
    ├── ConflictError           an impossible workflow transition                          409 / 1
    │   └── StaleError          a form saved against an older version of the case          409 / 1
    ├── StorageError            the case store or an output file could not write           503 / 4
    ├── BusyError               at capacity (the triage queue is full): Retry-After        503 / 1
    └── Refused                 the caller may not do this
        ├── UnauthorizedError   no API key, or one that is not configured                  401 / 1
        ├── ForbiddenError      a valid key whose role lacks the permission                403 / 1
        └── ThrottledError      too many wrong keys or logins from one client (Retry-After) 429 / 1

``http_status(exc)`` and ``exit_code(exc)`` read the table ``CODES`` below, the only place where
an error becomes a number: the JSON API, the review pages, the CLI and ``serve.py`` all use them.
Messages name the bad value and what was expected.
"""

from __future__ import annotations


class TriageError(Exception):
    """Base class of the errors triage raises on purpose."""


class ConfigError(TriageError):
    """A setting, dataset config, agency directory or routing table is invalid."""


class DataError(TriageError):
    """A data file cannot be read, or lacks a column the configuration names."""


class ModelError(TriageError):
    """A model artifact is missing, corrupt, unfitted, or does not match this code."""


class InputError(TriageError):
    """A complaint or request that cannot be triaged as given."""


class TooLargeError(InputError):
    """A request bigger than a configured limit."""


class LabelError(TriageError):
    """A label outside the allowed set."""

    def __init__(self, kind: str, label: str, allowed: list[str]) -> None:
        self.kind, self.label, self.allowed = kind, label, list(allowed)
        super().__init__(f"{kind} {label!r} is not one of: {', '.join(self.allowed)}")


class NotFoundError(TriageError):
    """A record that does not exist."""


class ConflictError(TriageError):
    """A stale update or an impossible workflow transition."""


class StaleError(ConflictError):
    """A form saved against an older version of a case than the stored one."""


class StorageError(TriageError):
    """The store (or an output file) could not write, e.g. the disk is full."""


class BusyError(TriageError):
    """The service is at capacity (its request queue is full): retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(TriageError):
    """The caller may not do this (see the subclasses)."""


class UnauthorizedError(Refused):
    """No API key, or one that is not configured."""


class ForbiddenError(Refused):
    """A valid key whose role may not do this."""


class ThrottledError(Refused):
    """A client that sent too many wrong keys or failed logins; ``retry_after`` seconds until it may try again."""

    def __init__(self, retry_after: int, what: str = "wrong API keys") -> None:
        super().__init__(f"too many {what} from this address; try again in {retry_after} s")
        self.retry_after = retry_after


CODES: dict[type[BaseException], tuple[int, int]] = {
    # class: (HTTP status, exit code)
    TriageError: (500, 1),
    ConfigError: (500, 2),
    DataError: (422, 2),
    ModelError: (503, 3),
    InputError: (422, 2),
    TooLargeError: (413, 2),
    LabelError: (422, 2),
    NotFoundError: (404, 1),
    ConflictError: (409, 1),
    StorageError: (503, 4),
    BusyError: (503, 1),
    Refused: (403, 1),
    UnauthorizedError: (401, 1),
    ForbiddenError: (403, 1),
    ThrottledError: (429, 1),
}
"""The one mapping of errors to numbers; the most specific class of an error decides."""


def _codes(exc: BaseException) -> tuple[int, int]:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return 500, 1


def http_status(exc: BaseException) -> int:
    """The HTTP status an error answers with: 500 for anything the package did not raise on purpose."""
    return _codes(exc)[0]


def exit_code(exc: BaseException) -> int:
    """The exit code a command ends with for an error: 2 bad input, 3 model, 4 cannot write, 1 other."""
    return _codes(exc)[1]
