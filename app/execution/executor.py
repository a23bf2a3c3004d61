"""Execute a program: recompute every step from its operands, within bounds.

The executor never trusts a step's written ``result``: problem and constant
operands are parsed as literals, step operands take the *recomputed* value of
the referenced step, and each operation goes through the whitelist in
:mod:`app.execution.operations`.  Wall time is bounded by a cooperative
:class:`~app.execution.limits.Deadline` (works in any thread).  Every failure
is an :class:`~app.execution.errors.ExecutionError` with a ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

from app.execution.arith_parser import parse_equation
from app.execution.errors import InvalidProgram, TooComplex
from app.execution.limits import DEFAULT_LIMITS, Deadline, Limits
from app.execution.operations import evaluate_op, parse_literal, solve_equation
from app.execution.program import Program, program_from_json

__all__ = ["ExecutionResult", "execute_program", "execute_program_json"]


@dataclass(frozen=True)
class ExecutionResult:
    """Recomputed value of every step (by id) and of the answer step."""

    values: dict[int, sympy.Expr]
    answer: sympy.Expr | None


def execute_program(program: Program, limits: Limits = DEFAULT_LIMITS,
                    deadline: Deadline | None = None) -> ExecutionResult:
    """Run ``program``; raises an ``ExecutionError`` subclass on any failure."""
    deadline = deadline or Deadline.after(limits.program_seconds)
    if len(program.steps) > limits.max_steps:
        raise TooComplex(f"more than {limits.max_steps} steps")
    values: dict[int, sympy.Expr] = {}
    for step in program.steps:
        deadline.check(f"step {step.id}")
        arguments: list[sympy.Expr] = []
        for operand in step.operands:
            if operand.kind == "step":
                if operand.ref not in values:
                    raise InvalidProgram(f"step {step.id} refers to unknown step {operand.ref}")
                arguments.append(values[operand.ref])
            else:
                if operand.value is None:
                    raise InvalidProgram(f"step {step.id}: operand without value")
                arguments.append(parse_literal(operand.value))
        if step.op == "EQUATION":
            lhs, rhs = parse_equation(step.text, limits)
            values[step.id] = solve_equation(lhs, rhs, limits, deadline, arguments)
        else:
            values[step.id] = evaluate_op(step.op, arguments, limits)
    if program.answer_step is not None and program.answer_step not in values:
        raise InvalidProgram(f"answer_step {program.answer_step} is not a step")
    answer = values[program.answer_step] if program.answer_step is not None else None
    return ExecutionResult(values, answer)


def execute_program_json(data: Any, limits: Limits = DEFAULT_LIMITS,
                         deadline: Deadline | None = None) -> ExecutionResult:
    """Validate a program's JSON and execute it."""
    return execute_program(program_from_json(data, limits), limits, deadline)
