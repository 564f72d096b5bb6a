"""Who may do what (``triage.auth``) and what each error answers (``triage.errors``): fast, no I/O.

``EXPECTED`` is the specification of the permission table (README, "The service"), written out
independently of ``triage.auth.PERMISSIONS``; ``test_permissions.py`` checks every role against
every endpoint from it.
"""

from __future__ import annotations

import pytest

from triage import errors
from triage.auth import PERMISSIONS, authorize, fingerprint, key_for_hmac, key_hmac, may, role_for_key
from triage.errors import ForbiddenError, UnauthorizedError

EXPECTED: dict[str, set[str]] = {
    "intake": {"triage", "model"},
    "reviewer": {"read", "review", "correct", "status", "model"},
    "admin": {"triage", "read", "review", "correct", "status", "model", "admin"},
}
AGENCY_EXPECTED = {"read", "status", "model"}
"""An agency key (``key:agency:<name>``): its own cases only (``triage.cases``), never the review pages."""


def test_the_code_grants_what_the_specification_says():
    assert {role: set(perms) for role, perms in PERMISSIONS.items()} == EXPECTED
    for role, perms in EXPECTED.items():
        for perm in ("triage", "read", "review", "correct", "status", "model", "admin", "other"):
            assert may(role, perm) == (perm in perms), (role, perm)
    for perm in ("triage", "read", "review", "correct", "status", "model", "admin", "other"):
        assert may("agency:สำนักงานเขตดุสิต", perm) == (perm in AGENCY_EXPECTED), perm
    assert not may(None, "model") and not may("stranger", "model")


def test_every_error_has_its_status_and_exit_code():
    expected = {  # the specification (README): HTTP status, exit code
        errors.TriageError: (500, 1), errors.ConfigError: (500, 2), errors.DataError: (422, 2),
        errors.ModelError: (503, 3), errors.InputError: (422, 2), errors.TooLargeError: (413, 2),
        errors.NotFoundError: (404, 1), errors.ConflictError: (409, 1), errors.StaleError: (409, 1),
        errors.StorageError: (503, 4), errors.UnauthorizedError: (401, 1), errors.ForbiddenError: (403, 1),
    }
    for cls, (status, code) in expected.items():
        exc = cls("x")
        assert (errors.http_status(exc), errors.exit_code(exc)) == (status, code), cls.__name__
    label = errors.LabelError("topic", "x", ["a"])
    assert (errors.http_status(label), errors.exit_code(label)) == (422, 2)
    assert errors.http_status(ValueError("not ours")) == 500 and errors.exit_code(KeyError("k")) == 1


def test_keys_roles_and_permissions():
    keys = {"intake-key-1": "intake", "review-key-2": "reviewer"}
    assert authorize(keys, "intake-key-1", "triage") == "intake"
    assert authorize(keys, "review-key-2", "status") == "reviewer"
    with pytest.raises(UnauthorizedError):
        authorize(keys, None, "triage")
    with pytest.raises(UnauthorizedError):
        authorize(keys, "intake-key-1x", "triage")
    with pytest.raises(ForbiddenError):
        authorize(keys, "intake-key-1", "read")
    with pytest.raises(ForbiddenError):
        authorize(keys, "review-key-2", "admin")
    assert authorize({}, None, "admin") == "admin"  # development mode
    secret = b"s" * 32
    assert key_for_hmac(keys, secret, key_hmac(secret, "review-key-2")) == "review-key-2"
    assert key_for_hmac(keys, secret, key_hmac(secret, "gone-key-99")) is None
    assert key_for_hmac(keys, b"t" * 32, key_hmac(secret, "review-key-2")) is None


def test_the_last_matching_key_decides_and_keys_are_compared_whole():
    keys = {"same-prefix-key": "intake", "same-prefix-key-2": "admin"}
    assert role_for_key(keys, "same-prefix-key") == "intake"
    assert role_for_key(keys, "same-prefix-key-2") == "admin"
    assert role_for_key(keys, "same-prefix") is None and role_for_key(keys, "") is None
    assert role_for_key({}, None) == "admin"
    secret = b"s" * 32
    assert len(fingerprint(secret, "k")) == 14 and fingerprint(secret, "k") != fingerprint(secret, "k2")
    assert fingerprint(secret, "k") != fingerprint(b"t" * 32, "k")  # keyed: useless without the server secret
    assert fingerprint(secret, "k", {"k": "somsri-desk"}) == "somsri-desk"


def test_a_key_that_is_not_valid_unicode_is_unknown_not_a_crash():
    """Header values can carry anything; a lone surrogate must not raise (found by mutation testing)."""
    keys = {"intake-key-1": "intake"}
    assert role_for_key(keys, "\ud800intake-key-1") is None
    assert len(fingerprint(b"s" * 32, "\ud800")) == 14 and key_hmac(b"s" * 32, "\ud800")
    with pytest.raises(UnauthorizedError, match="^missing or unknown API key"):
        authorize(keys, "\udfffx", "triage")
    with pytest.raises(ForbiddenError, match="^role 'intake' may not do this"):
        authorize(keys, "intake-key-1", "read")
