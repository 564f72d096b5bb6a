"""Service settings: one typed ``Settings`` read from ``TRIAGE_*`` environment variables.

Every setting has a default that works on a laptop (a SQLite file under ``data/``, models
under ``models/``). A bad value fails at start-up with a message naming it, never later.

    TRIAGE_DATA_DIR=/var/lib/triage TRIAGE_API_KEYS="k1:intake,k2:reviewer,k3:admin" python serve.py
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from triage.auth import AGENCY_ROLE, ROLES, agency_of
from triage.errors import ConfigError


def parse_api_keys(value: str) -> dict[str, str]:
    """``"k1:intake,k2:admin"`` -> ``{"k1": "intake", "k2": "admin"}``; raises ValueError naming a bad pair.

    ``"k3:agency:สำนักงานเขตบางรัก"`` gives ``{"k3": "agency:สำนักงานเขตบางรัก"}`` (the name is checked
    against the agency directory at start, ``Settings.check_serving``).
    """
    keys: dict[str, str] = {}
    for pair in (p.strip() for p in value.split(",")):
        if not pair:
            continue
        key, sep, agency = pair.rpartition(":agency:")
        if sep and key.strip() and agency.strip():
            key, agency = key.strip(), agency.strip()
            if len(key) < 8:
                raise ValueError(f"an API key for agency {agency!r} has {len(key)} characters; at least 8 are needed")
            keys[key] = AGENCY_ROLE + agency
            continue
        key, sep, role = pair.rpartition(":")
        key, role = key.strip(), role.strip()
        if not sep or not key:
            raise ValueError(f"API key entry {pair.split(':')[0][:4]}... is not 'key:role'")
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}, agency:<official agency name>")
        if len(key) < 8:
            raise ValueError(f"an API key for role {role!r} has {len(key)} characters; at least 8 are needed")
        keys[key] = role
    return keys


class Settings(BaseSettings):
    """The service's configuration; environment variables are the field names with ``TRIAGE_``."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str = ""
    """``sqlite:///path/to/file.db`` or a plain path; empty means ``<data_dir>/triage.db``."""
    models_dir: Path = Path("models")
    model_path: Path | None = None
    """The model folder to serve; empty means ``<models_dir>/current``."""
    api_keys: str = ""
    """Comma-separated ``key:role`` pairs; roles are intake, reviewer, admin."""
    dev_mode: bool = False
    """Serve without API keys (every caller is admin). Must be asked for explicitly."""
    max_text_chars: int = Field(10_000, ge=10, le=100_000)
    max_batch: int = Field(100, ge=1, le=10_000)
    max_body_bytes: int = Field(2_000_000, ge=1_000)
    review_threshold: float = Field(0.5, ge=0.0, le=1.0)
    """A case whose most likely topic has a lower probability goes to the review queue."""
    escalation_agency: str = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"
    """Where an escalated case goes when no agency is named: the central level."""
    page_limit: int = Field(50, ge=1, le=1000)
    log_level: str = "info"
    workers: int = Field(1, ge=1, le=16)
    """Server processes; they share the database, and a reload in one is followed by the others."""
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
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'triage.db'}"

    @property
    def model_dir(self) -> Path:
        return self.model_path or self.models_dir / "current"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, read once."""
    return Settings()
