"""A computation found in CoT text, before its operands are resolved.

Parsers (:mod:`app.execution.text_steps`, :mod:`app.execution.latex_steps`)
produce these; :func:`app.execution.program.build_program` turns them into
program steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.execution.expression import Node, Num

__all__ = ["Computation", "SOURCES"]

SOURCES: tuple[str, ...] = ("annotation", "arithmetic", "latex", "equation")


@dataclass(frozen=True)
class Computation:
    """One computation of a CoT.

    ``kind == 'value'``: ``tree`` is an expression whose value is the result
    (``claimed`` is the written ``= value``, if any).  ``kind == 'equation'``:
    ``tree`` is the left side, ``rhs`` the right side,
    and the result is the single unknown's solution; ``equation_text`` is the
    normalised equation the executor re-parses.  ``start``/``end`` are char
    offsets into the CoT text.
    """

    kind: str  # 'value' | 'equation'
    tree: Node
    claimed: Num | None
    text: str
    start: int
    end: int
    source: str  # one of SOURCES
    rhs: Node | None = None
    equation_text: str | None = None
    assigns: str | None = None  # "C = 3*24+6": the unknown this value is given to
