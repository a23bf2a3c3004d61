"""Let other tools (``psql``, ``pg_dump``) use Mycelium's database.

* :func:`libpq_url` turns the SQLAlchemy URL (``postgresql+psycopg://…``) into the URL libpq
  understands (``postgresql://…``).
* The embedded server stops when the last Mycelium process holding it exits, which would be
  right after ``mycelium db url`` prints its URL. :func:`spawn_holder` starts a detached
  ``mycelium db serve --until-idle N`` that holds the server until no client has been connected
  for ``N`` seconds (:func:`hold_until_idle`), so ``psql "$(mycelium db url)"`` works and no
  server is left running afterwards.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

SQLALCHEMY_PREFIXES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql+asyncpg://", "postgres://")


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://u:p@h/db?host=/sock`` → ``postgresql://u:p@h/db?host=/sock``."""
    for prefix in SQLALCHEMY_PREFIXES:
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def spawn_holder(idle_seconds: float, timeout: float = 120.0) -> int:
    """Start a detached holder of the embedded server; return its pid once it holds the server."""
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    holder = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "db", "serve", "--until-idle", str(idle_seconds)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives the shell's $( … ) and Ctrl-C of the caller
        env=env,
        text=True,
    )
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], timeout)
    line = holder.stdout.readline() if ready else ""
    holder.stdout.close()
    if not line.strip():
        raise RuntimeError("the embedded-server holder did not start (run `mycelium db serve` instead)")
    return holder.pid


def client_connections(url: str) -> int:
    """Client backends connected to the server at ``url``, this connection excluded."""
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def hold_until_idle(url: str, idle_seconds: float, poll: float = 1.0) -> None:
    """Return once no client has been connected for ``idle_seconds`` (checked every ``poll`` s)."""
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_seconds:
        time.sleep(poll)
        try:
            busy = client_connections(url) > 0
        except Exception:  # noqa: BLE001 - the server went away: nothing left to hold
            return
        if busy:
            idle_since = time.monotonic()


def detach_stdout() -> None:
    """Point stdout at /dev/null (so a ``$( … )`` reading our first line returns)."""
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
