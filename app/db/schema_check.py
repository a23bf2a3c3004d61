"""Make sure the configured database has the schema before a command touches it.

Shared by every command line (``app/cli.py``, ``labeling/cli.py``, ``workers/cli.py``, and new
ones): they import it from here, so the CLIs import downwards only.
"""

from __future__ import annotations

from app.config import get_settings
from app.errors import UserError


class SchemaMissing(UserError):
    """``DATABASE_URL`` points at a database without the Mycelium schema."""

    exit_code = 2


def ensure_schema() -> None:
    """Migrate the embedded database automatically; require an explicit upgrade for a shared one."""
    from sqlalchemy import inspect

    from app.db.migrate import upgrade
    from app.db.session import database_url, get_engine

    if not get_settings().database_url:
        upgrade(database_url())
        return
    if not inspect(get_engine()).has_table("alembic_version"):
        raise SchemaMissing("the database at DATABASE_URL has no Mycelium schema: run `mycelium db upgrade` first")
