"""Opening the case store a database URL names: SQLite (``triage.store``) or PostgreSQL (``triage.store_pg``).

The one place that knows both backends, so that neither store module imports the other's opener.
"""

from __future__ import annotations

from pathlib import Path

from triage.errors import ConfigError
from triage.store import ReviewStore, SQLiteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def open_store(url: str, sla_hours: dict[str, float] | None = None, webhooks: bool = False,
               pool_size: int = 10) -> ReviewStore:
    """Open the store a URL names: ``sqlite:///path`` (or a plain path), or ``postgresql://user:pass@host/db``
    (``triage.store_pg``, with a pool of at most ``pool_size`` connections). Applies migrations.

    ``sla_hours`` gives each case its deadline; ``webhooks`` writes an outbox event per status change.
    """
    store: SQLiteStore
    if url.startswith(POSTGRES_SCHEMES):
        from triage.store_pg import PostgresStore  # psycopg is imported only for a PostgreSQL URL

        store = PostgresStore(url, pool_size=pool_size)
    elif url.startswith("sqlite:///"):
        store = SQLiteStore(Path(url[len("sqlite:///"):]))
    elif "://" in url:
        raise ConfigError(f"database URL {url.split('://')[0]}://... is not one of: sqlite:///path, "
                          "postgresql://user:password@host/database")
    else:
        store = SQLiteStore(Path(url))
    store.configure_followup(sla_hours, webhooks)
    return store
