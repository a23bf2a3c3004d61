"""Run Alembic migrations programmatically (``mycelium db upgrade`` and the tests).

Migrations hold a Postgres advisory lock for their whole run, so processes that migrate the same
database at once (two commands on a fresh embedded home, several workers starting together) run
one after the other: the first migrates, the others find the schema at head and do nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# pg_advisory_lock key of migrations ("mycelium migrate"); the same on every machine.
MIGRATION_LOCK_KEY = 0x6D79_6D69_6772


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that needs no ``alembic.ini``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold the migration advisory lock of the database at ``url`` (waiting for it if taken).

    The lock lives on a connection of its own and is released when the block ends, or by Postgres
    if this process dies.
    """
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate to ``revision``, one process at a time."""
    with migration_lock(url):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate down to ``revision``, one process at a time."""
    with migration_lock(url):
        command.downgrade(alembic_config(url), revision)
