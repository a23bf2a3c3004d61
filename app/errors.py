"""User-facing errors: one clear line and a non-zero exit instead of a traceback.

Library and CLI code raise :class:`UserError` (or a subclass) for a mistake the user can fix —
a missing model, a wrong API key, an unmigrated database — with the message they should read::

    from app.errors import UserError

    raise UserError("no trace 42; list them with `mycelium show traces`", exit_code=2)

The ``mycelium`` entry point (``app/cli.py``) prints ``error: <message>`` on one line and exits
with ``exit_code``; ``mycelium --debug …`` (or ``MYCELIUM_DEBUG=1``) shows the traceback instead.
A few third-party exceptions that always mean "fix your setup" (connection refused, database
unreachable) are translated by :func:`describe` the same way. This module imports nothing from
the rest of the project, so every layer can use it.
"""

from __future__ import annotations

import os
import re


class UserError(Exception):
    """A mistake the user can fix: shown as one line, exit code ``exit_code`` (default 1)."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


def debug_enabled() -> bool:
    """``MYCELIUM_DEBUG`` set to something truthy: show tracebacks instead of one-line errors."""
    return os.environ.get("MYCELIUM_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


_PASSWORD_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide passwords in URLs (``scheme://user:secret@host`` → ``scheme://user:***@host``)."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m.group('scheme')}***@", text)


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an exception a user can fix, or None for a bug."""
    if isinstance(exc, UserError):
        return redact(first_line(exc.message)), exc.exit_code
    module = type(exc).__module__ or ""
    name = type(exc).__name__
    # The database is unreachable or refuses us (wrong host, password, database name).
    if module.startswith(("sqlalchemy", "psycopg")) and name == "OperationalError":
        detail = first_line(getattr(exc, "orig", None) or exc)
        return redact(f"cannot use the database: {detail} (check DATABASE_URL)"), 1
    # An HTTP service (Label Studio, the hub) is down or unreachable.
    if module.startswith(("httpx", "httpcore")) and name in ("ConnectError", "ConnectTimeout"):
        return redact(f"cannot connect: {first_line(exc) or name}"), 1
    if module.startswith("kombu") and name == "OperationalError":
        return redact(f"cannot reach the Celery broker: {first_line(exc)} (check CELERY_BROKER_URL)"), 1
    return None
