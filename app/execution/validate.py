"""Execution validation: CoT -> program -> execute -> compare with the gold answer.

``validate_solution`` is the pure core the persistence shell calls for every
trace (and for a dataset's reference solutions).  It never raises for bad
input: every failure becomes ``executes``/``correct`` False plus a ``reason``.
The gold answer is used only for the final comparison, never while building or
executing the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy

from app.execution.computation import Computation
from app.execution.equivalence import equivalent
from app.execution.errors import ExecutionError, InputTooLong
from app.execution.executor import execute_program
from app.execution.latex_steps import find_latex_computations
from app.execution.limits import DEFAULT_LIMITS, Deadline, Limits
from app.execution.program import build_program, program_to_json, rational_text
from app.execution.text_steps import find_computations

__all__ = ["ValidationResult", "validate_solution", "format_answer", "computations_for",
           "DATASETS", "REASONS"]

DATASETS: tuple[str, ...] = ("gsm8k", "math")
# Reasons besides the ExecutionError reasons (errors.py):
REASONS: dict[str, str] = {
    "no_steps": "no computation could be parsed from the CoT",
    "no_gold": "the gold answer is missing",
    "answer_not_final": "the gold answer is a step result, but not the final one",
    "answer_mismatch": "the final result differs from the gold answer",
    "unknown_dataset": "dataset is not one of DATASETS",
}


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one CoT against its gold answer."""

    program: dict[str, Any] = field(default_factory=lambda: {"steps": [], "answer_step": None})
    answer: str | None = None  # the executed program's final value, as text
    executes: bool = False
    correct: bool = False
    reason: str | None = None  # None when correct


def format_answer(value: sympy.Expr) -> str:
    """Answer text of a value: ``"24"``, ``"3.5"``, ``"1/3"``, ``"2*sqrt(3)"``."""
    if isinstance(value, sympy.Rational):
        return rational_text(value)
    return str(value)


def computations_for(cot_text: str, dataset: str, limits: Limits = DEFAULT_LIMITS,
                     deadline: Deadline | None = None) -> list[Computation]:
    """Computations of a CoT: plain-text parsing for GSM8K, LaTeX parsing for MATH."""
    if dataset == "gsm8k":
        return find_computations(cot_text, limits, deadline)
    return find_latex_computations(cot_text, limits, deadline)


def validate_solution(problem_text: str, cot_text: str, gold_answer: str | None,
                      dataset: str, limits: Limits = DEFAULT_LIMITS) -> ValidationResult:
    """Build the program of ``cot_text``, execute it and compare with ``gold_answer``."""
    if dataset not in DATASETS:
        return ValidationResult(reason="unknown_dataset")
    try:
        if len(problem_text) > limits.max_document_chars:
            raise InputTooLong(f"problem has {len(problem_text)} chars")
        deadline = Deadline.after(limits.document_seconds)
        computations = computations_for(cot_text, dataset, limits, deadline)
        program = build_program(problem_text, computations, limits, deadline)
    except ExecutionError as error:
        return ValidationResult(reason=error.reason)
    program_json = program_to_json(program)
    if not program.steps:
        return ValidationResult(program=program_json, reason="no_steps")
    try:
        result = execute_program(program, limits)
    except ExecutionError as error:
        return ValidationResult(program=program_json, reason=error.reason)
    assert result.answer is not None
    answer = format_answer(result.answer)
    if gold_answer is None or not gold_answer.strip():
        return ValidationResult(program_json, answer, True, False, "no_gold")
    if _matches(answer, gold_answer):
        return ValidationResult(program_json, answer, True, True, None)
    earlier = any(_matches(format_answer(value), gold_answer)
                  for step_id, value in result.values.items() if step_id != program.answer_step)
    return ValidationResult(program_json, answer, True, False,
                            "answer_not_final" if earlier else "answer_mismatch")


def _matches(answer: str, gold: str) -> bool:
    """Whether an executed answer equals the gold answer mathematically (hostile gold: no)."""
    try:
        return equivalent(answer, gold)
    except ExecutionError:
        return False
