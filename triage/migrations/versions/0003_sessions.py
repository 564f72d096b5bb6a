"""Migration 3: review-page sessions.

The SQL of each backend is in triage.store (SQLite) and triage.store_pg (PostgreSQL)."""

from triage.migrate import run_step
from triage.store import MIGRATIONS
from triage.store_pg import PG_MIGRATIONS

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_step(MIGRATIONS[2], PG_MIGRATIONS[2])
