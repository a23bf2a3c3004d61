"""Resource bounds for parsing and execution, and a thread-safe wall-time deadline.

Bounds are checked *before* work is done (text length, nesting depth, exponent
size) so hostile input is refused cheaply; the deadline is cooperative
(``time.monotonic`` checks between operations), so it works in the main
thread and in worker threads alike — no signals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.execution.errors import EvaluationTimeout

__all__ = ["Limits", "DEFAULT_LIMITS", "Deadline"]


@dataclass(frozen=True)
class Limits:
    """Upper bounds; all lengths in characters, times in seconds."""

    max_expression_chars: int = 2_000  # one expression / equation / LaTeX snippet
    max_document_chars: int = 200_000  # one whole CoT or solution
    max_depth: int = 60  # parenthesis / tree nesting
    max_tokens: int = 400  # tokens in one expression
    max_nodes: int = 400  # sympy tree nodes of one parsed LaTeX expression
    max_exponent: int = 4_096  # |n| in x**n for integer n
    max_value_bits: int = 20_000  # bit length of any numerator / denominator
    max_factorial: int = 1_000  # n in n!, and n in binomial(n, k)
    max_steps: int = 500  # steps in one program
    program_seconds: float = 2.0  # wall time for executing one program
    document_seconds: float = 10.0  # wall time for parsing one whole CoT


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Deadline:
    """A point in ``time.monotonic()`` seconds after which work must stop."""

    expires_at: float

    @staticmethod
    def after(seconds: float) -> "Deadline":
        """A deadline ``seconds`` from now."""
        return Deadline(time.monotonic() + seconds)

    @staticmethod
    def never() -> "Deadline":
        """A deadline that never expires (for tests and trusted callers)."""
        return Deadline(float("inf"))

    def remaining(self) -> float:
        """Seconds left (negative once expired)."""
        return self.expires_at - time.monotonic()

    def check(self, what: str = "") -> None:
        """Raise :class:`EvaluationTimeout` when the deadline has passed."""
        if time.monotonic() > self.expires_at:
            raise EvaluationTimeout(what or "deadline passed")
