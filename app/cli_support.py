"""Plumbing of the ``mycelium`` command line shared by every command, old and new.

* :class:`MyceliumGroup` (the root group's class) turns a :class:`app.errors.UserError` — and the
  few third-party errors :func:`app.errors.describe` knows — raised by *any* command into one
  ``error: …`` line on stderr and a non-zero exit; ``mycelium --debug …`` (or ``MYCELIUM_DEBUG=1``)
  lets the traceback through. It works under ``typer.testing.CliRunner`` too.
* It tidies ``--help``: docstring paragraphs are re-flowed (no hard line breaks in the middle of a
  sentence) and plain flags do not show a ``<bool>`` type.
* :func:`report_unexpected` is ``main()``'s last resort for a bug: one line plus a hint to rerun
  with ``--debug``.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import click
import typer
import typer.core

from app.errors import debug_enabled, describe, first_line, redact

# Recent typer vendors click as ``typer._click``: its exceptions, not click's, reach our code.
_click_exceptions: Any = getattr(getattr(typer.core, "_click", None), "exceptions", click.exceptions)
_PASS_THROUGH = tuple(
    {_click_exceptions.ClickException, click.exceptions.ClickException, typer.Exit, typer.Abort,
     click.exceptions.Exit, click.exceptions.Abort}
)


def _flag_aware_display_type(original: Any) -> Any:
    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None  # a plain flag takes no value: no "<bool>"
        return original(self, ctx)

    display_type_rich.__mycelium__ = True  # type: ignore[attr-defined]
    return display_type_rich


_option_class = getattr(typer.core, "TyperOption", None)
if _option_class is not None and hasattr(_option_class, "display_type_rich"):
    if not getattr(_option_class.display_type_rich, "__mycelium__", False):
        _option_class.display_type_rich = _flag_aware_display_type(_option_class.display_type_rich)


def reflow(text: str | None) -> str | None:
    """Join the hard-wrapped lines of each paragraph of a docstring (``\\b`` paragraphs kept)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs
    )


def _tidy_help(command: Any) -> None:
    command.help = reflow(command.help)
    if isinstance(getattr(command, "commands", None), dict):
        for sub in command.commands.values():
            _tidy_help(sub)


def _debug_requested(ctx: Any) -> bool:
    if debug_enabled():
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug"))


def print_error(message: str) -> None:
    label = "\x1b[1;31merror:\x1b[0m" if sys.stderr.isatty() and not os.environ.get("NO_COLOR") else "error:"
    print(f"{label} {message}", file=sys.stderr, flush=True)


class MyceliumGroup(typer.core.TyperGroup):
    """Root group: one-line user errors for every sub-command, tidy help."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _tidy_help(self)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            if _debug_requested(ctx):
                exc._mycelium_debug = True  # type: ignore[attr-defined]  # main() must not swallow it either
                raise
            described = describe(exc)
            if described is None:
                raise
            message, code = described
            print_error(message)
            raise typer.Exit(code) from None


def report_unexpected(exc: BaseException) -> int:
    """``main()``'s handler for an exception no command turned into a user error; returns the exit code."""
    if debug_enabled() or "--debug" in sys.argv[1:] or getattr(exc, "_mycelium_debug", False):
        raise exc
    described = describe(exc)
    if described is not None:
        print_error(described[0])
        return described[1]
    detail = redact(first_line(str(exc))) or "(no message)"
    print_error(f"unexpected {type(exc).__name__}: {detail} (rerun with `mycelium --debug …` for the traceback)")
    return 1
