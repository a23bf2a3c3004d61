"""A program as reviewer-editable text, and the reviewer's text back as a verified program — pure.

The review screen shows a program one step per line in the plain-arithmetic syntax the CoT
parser reads (:mod:`app.execution.text_steps`), e.g.::

    48 / 2 = 24
    48 + 24 = 72

A step operand is written as the referenced step's result (``24``): the parser turns a number
equal to an earlier result back into that dependency edge. The last line is the answer step.
At import the reviewer's text goes through the same parser, program builder, executor and
gold comparison as a reference solution (:func:`app.execution.validate.validate_solution`),
so a human correction is verified exactly as a machine program is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.execution.validate import ValidationResult, validate_solution

# Infix spelling of n-ary / binary ops in the parser's syntax.
_INFIX: dict[str, str] = {"ADD": " + ", "SUB": " - ", "MUL": " * ", "DIV": " / ", "POW": " ^ "}
PROGRAM_SYNTAX = "gsm8k"  # reviewer text is plain arithmetic for every dataset (text_steps parser)
NO_PROGRAM = "no_steps"  # validate_solution's reason when nothing could be parsed


def _operand_text(operand: Mapping[str, Any], results: Mapping[int, str]) -> str:
    if operand.get("kind") == "step":
        return _atom(results.get(int(operand.get("ref") or 0), "?"))
    return _atom(str(operand.get("value", "?")))


def _atom(value: str) -> str:
    """Parenthesise a value that would not read as one number (``-3``, ``7/2``)."""
    plain = value.replace(".", "", 1).replace("%", "")
    return value if plain.isdigit() else f"({value})"


def step_line(step: Mapping[str, Any], results: Mapping[int, str]) -> str | None:
    """One step as ``a op b = result`` (None for a SELECT, which restates an earlier result)."""
    op = str(step.get("op"))
    operands = [_operand_text(o, results) for o in step.get("operands") or []]
    result = str(step.get("result") or "")
    if op == "SELECT":
        return None
    if op == "EQUATION":
        return str(step.get("text") or "")
    if op in _INFIX and len(operands) >= 2:
        expression = _INFIX[op].join(operands)
    elif op == "SQRT" and operands:
        expression = f"√{operands[0]}"
    elif op == "NEG" and operands:
        expression = f"0 - {operands[0]}"
    elif op == "TO_PERCENT" and operands:
        expression = f"{operands[0]} * 100"
    elif op == "ROOT" and len(operands) == 2:
        expression = f"{operands[0]} ^ (1 / {operands[1]})"
    else:
        expression = f"{op.lower()}({', '.join(operands)})"
    return f"{expression} = {result}" if result else expression


def program_lines(program: Mapping[str, Any]) -> list[str]:
    """The lines of a program JSON (``programs.steps`` shape), in execution order.

    A final SELECT (the CoT restating an earlier result as its answer) is written as
    ``<<v=v>>`` when that result is not already the last line, so the answer stays last.
    """
    steps = list(program.get("steps") or [])
    results = {int(s["id"]): str(s.get("result") or "") for s in steps if isinstance(s.get("id"), int)}
    lines: list[str] = []
    last_value: str | None = None
    for step in steps:
        line = step_line(step, results)
        if line is None:
            refs = [o.get("ref") for o in step.get("operands") or [] if o.get("kind") == "step"]
            value = results.get(int(refs[0])) if refs and refs[0] is not None else None
            if value and value != last_value:
                lines.append(f"<<{value}={value}>>")
                last_value = value
            continue
        lines.append(line)
        last_value = results.get(int(step.get("id") or 0))
    return lines


def render_program(program: Mapping[str, Any]) -> str:
    """The program as editable text: one step per line."""
    return "\n".join(program_lines(program))


@dataclass(frozen=True)
class Verdict:
    """The execution verdict of a reviewer's program text (stored in ``annotations.verdict``).

    ``status``: ``reproduces_gold`` | ``wrong_answer`` (executes, answer ≠ gold) |
    ``does_not_execute`` (parsed, execution failed) | ``no_program`` (nothing could be parsed).
    """

    status: str
    reason: str | None
    answer: str | None
    gold: str | None
    n_steps: int
    program: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.status == "reproduces_gold"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "correct": self.correct,
            "reason": self.reason,
            "answer": self.answer,
            "gold": self.gold,
            "n_steps": self.n_steps,
        }


def verdict_status(result: ValidationResult) -> str:
    """Map a validation outcome to a verdict status (see :class:`Verdict`)."""
    if result.correct:
        return "reproduces_gold"
    if not result.program.get("steps"):
        return "no_program"
    if result.executes:
        return "wrong_answer"
    return "does_not_execute"


def verify_program_text(problem_text: str, program_text: str, gold_answer: str | None) -> Verdict:
    """Parse, build, execute ``program_text`` against ``problem_text`` and compare with the gold.

    Never raises for bad input: every failure is a verdict.
    """
    result = validate_solution(problem_text, program_text, gold_answer, PROGRAM_SYNTAX)
    return Verdict(
        status=verdict_status(result),
        reason=result.reason,
        answer=result.answer,
        gold=gold_answer,
        n_steps=len(result.program.get("steps") or []),
        program=result.program,
    )


def textarea_lines(values: Sequence[Any]) -> str:
    """A Label Studio textarea value (a list of submitted strings) as one program text."""
    return "\n".join(str(v) for v in values).strip()
