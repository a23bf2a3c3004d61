"""Typed errors of the execution layer.

Every failure to parse, build or execute carries a stable snake_case ``reason``
(the value persisted in the database and counted in ``failures_by_reason``) and
a human-readable ``detail``.  Callers catch :class:`ExecutionError` and never
need to catch anything broader.
"""

from __future__ import annotations

__all__ = [
    "ExecutionError", "InputTooLong", "TooDeep", "TooComplex", "ExponentTooLarge",
    "NumberTooLarge", "EvaluationTimeout", "ParseError", "ForbiddenInput",
    "UnsupportedOperation", "DivisionByZero", "InvalidProgram", "NoSolution",
    "NonNumeric",
]


class ExecutionError(Exception):
    """Base class: a failure with a machine-readable ``reason``."""

    reason: str = "execution_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class InputTooLong(ExecutionError):
    """Text longer than the configured bound (checked before any parsing)."""

    reason = "input_too_long"


class TooDeep(ExecutionError):
    """Expression nesting deeper than the configured bound."""

    reason = "too_deep"


class TooComplex(ExecutionError):
    """Too many tokens, nodes or steps."""

    reason = "too_complex"


class ExponentTooLarge(ExecutionError):
    """A power (or factorial, binomial) whose size would explode."""

    reason = "exponent_too_large"


class NumberTooLarge(ExecutionError):
    """An intermediate value with too many digits."""

    reason = "number_too_large"


class EvaluationTimeout(ExecutionError):
    """The wall-time budget of a program or expression ran out."""

    reason = "timeout"


class ParseError(ExecutionError):
    """Text that is not a well-formed expression of the accepted grammar."""

    reason = "parse_error"


class ForbiddenInput(ExecutionError):
    """Text with constructs that are refused outright (macros, code)."""

    reason = "forbidden_input"


class UnsupportedOperation(ExecutionError):
    """An operation or sympy node outside the whitelist."""

    reason = "unsupported_op"


class DivisionByZero(ExecutionError):
    """Division by zero (or another undefined value such as 0**-1)."""

    reason = "division_by_zero"


class InvalidProgram(ExecutionError):
    """A program whose JSON or structure is malformed (bad refs, bad arity)."""

    reason = "invalid_program"


class NoSolution(ExecutionError):
    """An equation without exactly one usable solution."""

    reason = "no_solution"


class NonNumeric(ExecutionError):
    """A value that is not a finite real number (symbols, infinities, complex)."""

    reason = "non_numeric"
