"""Service settings: one typed ``Settings`` read from ``TRIAGE_*`` environment variables.

Every setting has a default that works on a laptop (a SQLite file under ``data/``, models
under ``models/``). A bad value fails at start-up with a message naming it, never later.

    TRIAGE_DATA_DIR=/var/lib/triage TRIAGE_API_KEYS="k1:intake,k2:reviewer,k3:admin" python serve.py
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from triage.auth import AGENCY_ROLE, ROLES, agency_of
from triage.errors import ConfigError
from triage.security import has_control

AGENCY = AGENCY_ROLE.rstrip(":")
"""``key:agency:<official agency name>`` entries give a key the role ``agency:<name>`` (``triage.auth.AGENCY_ROLE``)."""


MAX_DEFAULT_WORKERS = 4
"""The default worker count is one per core this process may run on, at most this many (each worker
holds its own copy of the model: about 500 MB)."""


def default_workers() -> int:
    """One server process per core available to this process (its CPU affinity, else the machine's
    count), at least 1 and at most ``MAX_DEFAULT_WORKERS``: what ``TRIAGE_WORKERS`` defaults to."""
    from triage.parallel import default_jobs

    return min(MAX_DEFAULT_WORKERS, default_jobs())


class KeyEntry(NamedTuple):
    """One ``TRIAGE_API_KEYS`` entry: the key's role and the label that names it in audit trails."""

    role: str
    label: str | None = None


def _entry(pair: str) -> tuple[str, KeyEntry]:
    """``key:role``, ``key:role:label`` or ``key:agency:<name>`` -> (key, KeyEntry).

    The role is the first ``:``-separated part after the key that is a role (or ``agency``), so a
    key may itself contain colons, as before labels existed.
    """
    parts = pair.split(":")
    at = next((i for i in range(1, len(parts)) if parts[i].strip() in (*ROLES, AGENCY)), None)
    if at is None:
        if len(parts) < 2 or not parts[0].strip():
            raise ValueError(f"API key entry {parts[0][:4]}... is not 'key:role' or 'key:role:label'")
        raise ValueError(f"role {parts[-1].strip()!r} is not one of: {', '.join(ROLES)}, "
                         f"{AGENCY}:<official agency name>")
    key, role = ":".join(parts[:at]).strip(), parts[at].strip()
    rest = ":".join(parts[at + 1 :]).strip() or None
    if not key:
        raise ValueError(f"API key entry for role {role!r} has no key before the ':'")
    if len(key) < 8:
        raise ValueError(f"an API key for role {role!r} has {len(key)} characters; at least 8 are needed")
    if rest is not None and (len(rest) > 200 or has_control(rest)):
        raise ValueError(f"the label of an API key for role {role!r} must be one line of at most 200 characters")
    if role == AGENCY:
        if rest is None:
            raise ValueError("an agency key needs the agency's official name: 'key:agency:<name>'")
        return key, KeyEntry(AGENCY_ROLE + rest, rest)
    return key, KeyEntry(role, rest)


def parse_key_entries(value: str) -> dict[str, KeyEntry]:
    """``"k1:intake,k2:reviewer:somsri-desk"`` -> ``{"k1": KeyEntry("intake"), "k2": KeyEntry("reviewer",
    "somsri-desk")}``; raises ValueError naming a bad entry. Two keys may not share a label: labels are
    how an audit trail tells the people behind keys apart.
    """
    entries: dict[str, KeyEntry] = {}
    seen: dict[str, str] = {}
    for pair in (p.strip() for p in value.split(",")):
        if not pair:
            continue
        key, entry = _entry(pair)
        if entry.label is not None and agency_of(entry.role) is None:
            if entry.label in seen:
                raise ValueError(f"label {entry.label!r} is given to two API keys; each key needs its own")
            seen[entry.label] = key
        entries[key] = entry
    return entries


def parse_api_keys(value: str) -> dict[str, str]:
    """``"k1:intake,k2:admin:ops"`` -> ``{"k1": "intake", "k2": "admin"}``; raises ValueError naming a bad pair."""
    return {key: entry.role for key, entry in parse_key_entries(value).items()}


class Settings(BaseSettings):
    """The service's configuration; environment variables are the field names with ``TRIAGE_``."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str = ""
    """``sqlite:///path/to/file.db`` or a plain path; empty means ``<data_dir>/triage.db``. Or
    ``postgresql://user:password@host/database``: one PostgreSQL database several replicas share."""
    database_pool_size: int = Field(10, ge=2, le=500)
    """PostgreSQL only: at most this many connections per server process (see the README's pool sizes)."""
    models_dir: Path = Path("models")
    model_path: Path | None = None
    """The model folder to serve; empty means ``<models_dir>/current``."""
    api_keys: str = ""
    """Comma-separated ``key:role`` or ``key:role:label`` entries; roles are intake, reviewer, admin.
    The label (e.g. the person or desk holding the key) names the key in audit trails."""
    secret_key: str = ""
    """Server secret (32+ characters) for session cookies and key fingerprints; empty: a random
    ``review-session.key`` file made once in the data dir. Set it when several hosts serve together."""
    dev_mode: bool = False
    """Serve without API keys (every caller is admin). Must be asked for explicitly."""
    max_text_chars: int = Field(10_000, ge=10, le=100_000)
    max_batch: int = Field(100, ge=1, le=10_000)
    max_body_bytes: int = Field(2_000_000, ge=1_000)
    max_header_bytes: int = Field(16_384, ge=1_024, le=1_048_576)
    """Request line and headers together; more is refused (431, or 400 from the HTTP parser)."""
    key_failures: int = Field(20, ge=1, le=100_000)
    """Wrong API keys one client may send per ``failure_window`` seconds; then every key from it gets 429."""
    login_failures: int = Field(10, ge=1, le=100_000)
    """Failed review logins one client may make per ``failure_window`` seconds; then logins get 429."""
    failure_window: float = Field(60.0, gt=0, le=86_400)
    review_threshold: float = Field(0.5, ge=0.0, le=1.0)
    """A case whose most likely topic has a lower probability goes to the review queue."""
    escalation_agency: str = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"
    """Where an escalated case goes when no agency is named: the central level."""
    page_limit: int = Field(50, ge=1, le=1000)
    log_level: str = "info"
    workers: int = Field(default_factory=default_workers, ge=1, le=16)
    """Server processes (default one per available core, at most 4: ``default_workers``); they share the
    database and the throttling counters (``triage.limits``), and a reload in one is followed by the others."""
    batch_wait_ms: float = Field(2.0, ge=0.0, le=100.0)
    """How long concurrent triage requests may wait for each other to be predicted and stored together."""
    batch_max: int = Field(64, ge=1, le=1000)
    """At most this many requests in one micro-batch."""
    batch_queue: int = Field(256, ge=1, le=100_000)
    """At most this many triage requests wait; more are refused with 503 and Retry-After."""
    sla_hours: str = "high=24,medium=72,low=360"
    """Hours an agency has to resolve a case, per urgency (fractions allowed); reset when it is forwarded."""
    sla_check_seconds: float = Field(60.0, gt=0, le=86_400)
    """How often the service escalates open cases past their deadline (``python -m triage escalate-overdue``
    does one pass for an outside scheduler)."""
    webhook_url: str = ""
    """Where every status change is POSTed (signed JSON); empty: no webhooks."""
    webhook_secret: str = ""
    """The HMAC-SHA256 key of the ``X-Triage-Signature`` header; needed with a webhook URL."""
    webhook_timeout: float = Field(5.0, gt=0, le=300)
    """Seconds a receiver has to answer one delivery before it counts as failed and is retried."""
    webhook_retry_seconds: float = Field(5.0, gt=0, le=3600)
    """The first retry's delay; it doubles with each failed attempt up to ``webhook_max_backoff``."""
    webhook_max_backoff: float = Field(3600.0, gt=0, le=86_400)
    track_rate_per_minute: float = Field(30.0, gt=0, le=100_000)
    """Tracking lookups (and feedback) allowed per client address per minute, with bursts of ``track_burst``."""
    track_burst: int = Field(10, ge=1, le=100_000)

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError(f"the secret key has {len(value)} characters; at least 32 are needed")
        return value

    @field_validator("sla_hours")
    @classmethod
    def _check_sla(cls, value: str) -> str:
        from triage.sla import parse_sla_hours

        parse_sla_hours(value)
        return value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {value[:40]!r} must start with http:// or https://")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug")
        if value.lower() not in levels:
            raise ValueError(f"log level {value!r} is not one of: {', '.join(levels)}")
        return value.lower()

    def check_serving(self) -> None:
        """Refuse to serve without keys unless development mode was asked for."""
        if not self.keys and not self.dev_mode:
            raise ConfigError("no API keys: set TRIAGE_API_KEYS='key:role,...' (roles: intake, reviewer, admin) "
                              "or TRIAGE_DEV_MODE=1 to serve without keys on a development machine")
        if self.webhook_url and len(self.webhook_secret) < 16:
            raise ConfigError("TRIAGE_WEBHOOK_URL is set but TRIAGE_WEBHOOK_SECRET is missing or shorter than 16 "
                              "characters: receivers check each delivery's X-Triage-Signature with it")
        self.check_agency_keys()

    def check_agency_keys(self, directory_path: Path | None = None) -> None:
        """Refuse ``key:agency:<name>`` entries whose name is not an agency of the directory."""
        names = {agency_of(role) for role in self.keys.values()} - {None}
        if not names:
            return
        from triage.routing import DIRECTORY_PATH, Directory

        path = directory_path or DIRECTORY_PATH
        directory = Directory.load(path)
        for name in sorted(n for n in names if n is not None):
            if name not in directory.agencies:
                canon = directory.canonical(name)
                hint = f" (its official name is {canon!r})" if canon else ""
                raise ConfigError(f"TRIAGE_API_KEYS: agency {name!r} of an agency key is not in the agency directory "
                                  f"{path}{hint}; use an official name from that file")

    @property
    def sla(self) -> dict[str, float]:
        """Hours to resolve per urgency level, from ``sla_hours``."""
        from triage.sla import parse_sla_hours

        return parse_sla_hours(self.sla_hours)

    @property
    def keys(self) -> dict[str, str]:
        return parse_api_keys(self.api_keys)

    @property
    def key_labels(self) -> dict[str, str | None]:
        """Each configured key's label (None when it has none)."""
        return {key: entry.label for key, entry in parse_key_entries(self.api_keys).items()}

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'triage.db'}"

    @property
    def model_dir(self) -> Path:
        return self.model_path or self.models_dir / "current"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, read once."""
    return Settings()
