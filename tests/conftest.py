"""Shared fixtures: a fresh, migrated database on the system Postgres for the test session.

The admin URL defaults to the machine's Postgres (127.0.0.1:5432, trust auth); override with
``MYCELIUM_TEST_ADMIN_URL``. Every test session creates its own database and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

FIXTURES = Path(__file__).parent / "fixtures"
ADMIN_URL = os.environ.get("MYCELIUM_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def create_database(name: str) -> str:
    """Create database ``name`` on the admin server and return its SQLAlchemy URL."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def use_database(url: str | None, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Point Mycelium's settings and engines at ``url`` (None: the embedded default)."""
    from app.config import get_settings
    from app.db.session import reset_engines

    if url is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    reset_engines()


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """A fresh database migrated to head that DATABASE_URL points at; dropped (and the previous
    DATABASE_URL restored) on exit."""
    from app.db.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = create_database(name)
    previous = os.environ.get("DATABASE_URL")
    try:
        upgrade(url)
        use_database(url)
        yield url
    finally:
        use_database(previous)
        drop_database(name)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database migrated to head; DATABASE_URL points at it for the whole session."""
    with migrated_database("mycelium_test") as url:
        yield url


@pytest.fixture()
def db_session(database_url: str) -> Iterator[Session]:
    """A session on the test database; every table is emptied after the test."""
    from app.db.models import Base
    from app.db.session import get_engine, session_factory

    session = session_factory()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with get_engine().begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch MYCELIUM_HOME (models, caches) for one test."""
    from app.config import get_settings

    monkeypatch.setenv("MYCELIUM_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


@pytest.fixture()
def trained(db_session: Session, tmp_path: Path, home: Path):
    """Six tiny specialists trained on the labelled fixtures, loaded (MYCELIUM_HOME in tmp_path)."""
    from tests.training_helpers import train_tiny_specialists

    return train_tiny_specialists(db_session, tmp_path / "tiny")
