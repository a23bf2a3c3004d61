"""Engine and session factory bound to the configured (or embedded) database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings


def database_url() -> str:
    """The configured ``DATABASE_URL``, or the embedded server's URL (starting it if needed)."""
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    from app.db.embedded import embedded_database_url

    return embedded_database_url(settings.mycelium_home)


_ENGINES: dict[str, Engine] = {}


def get_engine() -> Engine:
    """The process-wide engine for :func:`database_url` (one per URL)."""
    url = database_url()
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url, pool_pre_ping=True)
    return _ENGINES[url]


def reset_engines() -> None:
    """Dispose cached engines (tests switch databases; forked workers must not share sockets)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
