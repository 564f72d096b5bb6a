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

from triage.auth import ROLES
from triage.errors import ConfigError


def parse_api_keys(value: str) -> dict[str, str]:
    """``"k1:intake,k2:admin"`` -> ``{"k1": "intake", "k2": "admin"}``; raises ValueError naming a bad pair."""
    keys: dict[str, str] = {}
    for pair in (p.strip() for p in value.split(",")):
        if not pair:
            continue
        key, sep, role = pair.rpartition(":")
        key, role = key.strip(), role.strip()
        if not sep or not key:
            raise ValueError(f"API key entry {pair.split(':')[0][:4]}... is not 'key:role'")
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
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

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: str) -> str:
        parse_api_keys(value)
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
