"""Migration 1: cases, their history, reviewers' corrections.

The SQL of each backend is in triage.store (SQLite) and triage.store_pg (PostgreSQL)."""

from triage.migrate import run_step
from triage.store import MIGRATIONS
from triage.store_pg import PG_MIGRATIONS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_step(MIGRATIONS[0], PG_MIGRATIONS[0])
