"""The exception tree of triage.

    TriageError                 base of everything the package raises on purpose
    ├── ConfigError             a bad setting, dataset config, directory or routing table
    ├── DataError               a data file that cannot be read or lacks a needed column
    ├── ModelError              no model, or a corrupt or mismatched artifact
    ├── InputError              a complaint or request the service cannot take (too long, empty...)
    ├── LabelError              a label that is not in the model's or directory's label set
    ├── NotFoundError           a case (or other record) that does not exist
    ├── ConflictError           a stale update or an impossible workflow transition
    ├── StorageError            the case store could not write (disk full, locked too long)
    └── ForbiddenError          a valid key that may not do this (a role's permission, an agency's step)

The API turns these into HTTP status codes in one place (``triage.api``), the CLI into exit
codes in one place (``triage.cli``). Messages name the bad value and what was expected.
"""

from __future__ import annotations


class TriageError(Exception):
    """Base class of the errors triage raises on purpose."""


class ConfigError(TriageError):
    """A setting, dataset config, agency directory or routing table is invalid."""


class DataError(TriageError):
    """A data file cannot be read, or lacks a column the configuration names."""


class ModelError(TriageError):
    """A model artifact is missing, corrupt, or does not match this code."""


class InputError(TriageError):
    """A complaint or request that cannot be triaged as given."""


class LabelError(TriageError):
    """A label outside the allowed set."""

    def __init__(self, kind: str, label: str, allowed: list[str]) -> None:
        self.kind, self.label, self.allowed = kind, label, list(allowed)
        super().__init__(f"{kind} {label!r} is not one of: {', '.join(self.allowed)}")


class NotFoundError(TriageError):
    """A record that does not exist."""


class ConflictError(TriageError):
    """A stale update or an impossible workflow transition."""


class StorageError(TriageError):
    """The store could not write, e.g. the disk is full."""


class ForbiddenError(TriageError):
    """A valid key whose role may not do this."""
