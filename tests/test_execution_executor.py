"""Executor: recomputation from operands, whitelist, bounds, typed errors, threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sympy

from app.execution.errors import (
    DivisionByZero, EvaluationTimeout, ExecutionError, ExponentTooLarge, InvalidProgram,
    NonNumeric, NumberTooLarge, UnsupportedOperation,
)
from app.execution.executor import execute_program_json
from app.execution.limits import Deadline
from app.execution.operations import evaluate_op, parse_literal


def _program(*steps: tuple[str, list[dict[str, Any]]], text: str = "") -> dict[str, Any]:
    return {"steps": [{"id": index + 1, "op": op, "operands": operands, "result": "?",
                       "text": text, "source": "arithmetic"}
                      for index, (op, operands) in enumerate(steps)],
            "answer_step": len(steps)}


def _c(value: str) -> dict[str, Any]:
    return {"kind": "constant", "value": value}


def _s(ref: int) -> dict[str, Any]:
    return {"kind": "step", "ref": ref}


def test_results_are_recomputed_not_trusted() -> None:
    data = _program(("DIV", [_c("48"), _c("2")]), ("ADD", [_c("48"), _s(1)]))
    data["steps"][0]["result"] = "25"  # a wrong written result is ignored
    result = execute_program_json(data)
    assert result.values == {1: 24, 2: 72}
    assert result.answer == 72


def test_operation_semantics() -> None:
    R = sympy.Rational
    cases = {
        ("SUB", ("100", "50", "30", "15")): R(5),
        ("DIV", ("1", "2", "4")): R(1, 8),
        ("POW", ("2", "10")): R(1024),
        ("SQRT", ("12",)): 2 * sympy.sqrt(3),
        ("ROOT", ("8", "3")): R(2),
        ("FACTORIAL", ("5",)): R(120),
        ("BINOMIAL", ("5", "2")): R(10),
        ("MOD", ("17", "5")): R(2),
        ("FLOOR", ("7/2",)): R(3),
        ("CEIL", ("7/2",)): R(4),
        ("ABS", ("-3",)): R(3),
        ("NEG", ("3",)): R(-3),
        ("TO_PERCENT", ("0.24",)): R(24),
        ("SELECT", ("7",)): R(7),
        ("MUL", ("60%", "50")): R(30),
        ("MUL", ("pi", "2")): 2 * sympy.pi,
    }
    for (op, literals), expected in cases.items():
        assert evaluate_op(op, [parse_literal(text) for text in literals]) == expected, op


def test_equation_step_is_solved_with_operand_values() -> None:
    data = _program(("MUL", [_c("3"), _c("3")]), ("EQUATION", [_s(1), _c("117")]), text="9s = 117")
    data["steps"][0]["text"] = "3*3"
    assert execute_program_json(data).answer == 13
    data["steps"][1]["operands"] = [_c("9")]  # fewer operands than numbers
    with pytest.raises(InvalidProgram):
        execute_program_json(data)


@pytest.mark.parametrize(("steps", "error"), [
    ([("DIV", [_c("1"), _c("0")])], DivisionByZero),
    ([("POW", [_c("10"), _c("10000000000")])], ExponentTooLarge),
    ([("POW", [_c("10"), _c("1000")]), ("POW", [_s(1), _c("1000")])], ExponentTooLarge),
    ([("FACTORIAL", [_c("1000000")])], ExponentTooLarge),
    ([("BINOMIAL", [_c("100000"), _c("50000")])], ExponentTooLarge),
    ([("SQRT", [_c("-4")])], NonNumeric),
    ([("MUL", [_c("1" * 150)] * 60)], NumberTooLarge),
    ([("FACTORIAL", [_c("2.5")])], UnsupportedOperation),
    ([("ADD", [_c("1")])], InvalidProgram),
    ([("POW", [_c("1"), _c("2"), _c("3")])], InvalidProgram),
])
def test_typed_errors(steps: list[tuple[str, list[dict[str, Any]]]], error: type[ExecutionError]) -> None:
    started = time.perf_counter()
    with pytest.raises(error) as raised:
        execute_program_json(_program(*steps))
    assert raised.value.reason == error.reason
    assert time.perf_counter() - started < 2.0


def test_tower_of_powers_stops_fast() -> None:
    started = time.perf_counter()
    data = _program(("POW", [_c("10"), _c("10")]), ("POW", [_c("10"), _s(1)]))
    with pytest.raises(ExponentTooLarge):
        execute_program_json(data)
    assert time.perf_counter() - started < 1.0


def test_expired_deadline_is_a_timeout() -> None:
    data = _program(("ADD", [_c("1"), _c("2")]))
    with pytest.raises(EvaluationTimeout) as raised:
        execute_program_json(data, deadline=Deadline(time.monotonic() - 1))
    assert raised.value.reason == "timeout"


def test_long_program_respects_the_wall_time_bound() -> None:
    steps = [("SQRT", [_c("2")])] + [("ADD", [_s(index), _c("1")]) for index in range(1, 400)]
    started = time.perf_counter()
    try:
        execute_program_json(_program(*steps), deadline=Deadline.after(0.05))
    except EvaluationTimeout:
        pass
    assert time.perf_counter() - started < 1.0


def test_executes_in_a_worker_thread() -> None:
    results: list[Any] = []
    data = _program(("MUL", [_c("6"), _c("7")]))
    worker = threading.Thread(target=lambda: results.append(execute_program_json(data).answer))
    worker.start()
    worker.join(timeout=10)
    assert results == [42]


def test_empty_program_has_no_answer() -> None:
    result = execute_program_json({"steps": [], "answer_step": None})
    assert result.answer is None and result.values == {}
