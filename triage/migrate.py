"""Schema migrations of both backends with Alembic: ``python -m triage.migrate DATABASE_URL``.

The revisions live in ``triage/migrations/versions`` (``0001``, ``0002``, ...); each runs the SQL of
its step for the backend it is applied to (``run_step``): ``triage.store.MIGRATIONS`` on SQLite
(unchanged from the numbered migrations SQLite databases already went through) and
``triage.store_pg.PG_MIGRATIONS`` on PostgreSQL. Alembic keeps the applied revision in its ``alembic_version`` table; SQLite's
``PRAGMA user_version`` is kept in step, and a SQLite file made before Alembic (only a
``user_version``) is stamped at its version first, so an upgrade never runs a step twice.

The whole upgrade is one transaction. Two processes starting at once do not race: on SQLite the
transaction takes the write lock up front (``BEGIN IMMEDIATE``), on PostgreSQL an advisory lock
(``MIGRATION_LOCK``); the second one then finds the schema at the newest revision. Stores migrate
when they open, so a rolling upgrade needs nothing more; this command does it ahead of time.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from triage.errors import ConfigError, StorageError
from triage.store_sessions import private_file

REVISIONS = ("0001", "0002", "0003")
HEAD = REVISIONS[-1]
MIGRATION_LOCK = 7_260_117_001
"""The PostgreSQL advisory lock key held while migrating."""
SCRIPTS = Path(__file__).parent / "migrations"


def run_step(sqlite: str, postgresql: str) -> None:
    """Inside an Alembic revision: apply the script of the backend it runs on (statements split on ``;``)."""
    from alembic import op

    dialect = op.get_context().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise ConfigError(f"no migrations for database dialect {dialect!r}")
    script = sqlite if dialect == "sqlite" else postgresql
    for sql in (s.strip() for s in script.split(";")):
        if sql:
            op.get_bind().exec_driver_sql(sql)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


def _current(connection: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Any, where: str) -> None:
    from alembic import command

    current = _current(connection)
    if current is not None and current not in REVISIONS:
        raise ConfigError(f"database {where} is at schema revision {current}, which this code does not know "
                          f"(newest here: {HEAD}): upgrade the code")
    if current != HEAD:
        command.upgrade(_config(connection), "head")


def upgrade_sqlite(path: Path) -> None:
    """Bring a SQLite file to the newest revision (see the module docstring)."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _take_the_write_lock(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            version = int(connection.exec_driver_sql("PRAGMA user_version").scalar() or 0)
            if version > len(REVISIONS):
                raise ConfigError(f"database {path} is at schema version {version}; this code knows "
                                  f"up to {len(REVISIONS)}: upgrade the code")
            if version and _current(connection) is None:  # made before Alembic: its steps are applied
                from alembic import command

                command.stamp(_config(connection), REVISIONS[version - 1])
            _upgrade(connection, str(path))
            connection.exec_driver_sql(f"PRAGMA user_version = {len(REVISIONS)}")
    except ConfigError:
        raise
    except Exception as exc:  # sqlalchemy / alembic errors
        raise StorageError(f"cannot migrate the case database {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL as SQLAlchemy's psycopg 3 dialect names it."""
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres", "postgresql+psycopg") else url


def upgrade_postgres(url: str, shown: str) -> None:
    """Bring a PostgreSQL database to the newest revision, under ``MIGRATION_LOCK``; ``shown`` names it in errors."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            _upgrade(connection, shown)
    except ConfigError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot migrate the case database {shown}: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m triage.migrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="sqlite:///path/to/triage.db or postgresql://user:password@host/database")
    a = ap.parse_args(argv)
    try:
        if a.url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            upgrade_postgres(a.url, redact(a.url))
        else:
            if "://" in a.url and not a.url.startswith("sqlite:///"):
                raise ConfigError(f"database URL {a.url.split('://')[0]}://... is not one of: sqlite:///path, "
                                  "postgresql://user:password@host/database")
            path = Path(a.url[len("sqlite:///"):] if a.url.startswith("sqlite:///") else a.url)
            private_file(path)
            upgrade_sqlite(path)
    except (ConfigError, StorageError) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 2
    print(f"schema at revision {HEAD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
