"""Operand matching: problem occurrences (char spans), earlier step results (dependency edges), constants."""

from __future__ import annotations

import sympy

from app.execution.numbers import find_numbers
from app.signals.config import OperandConfig
from app.signals.operands import (
    candidate_values,
    match_operand,
    match_operands,
    match_step_operands,
    step_dependencies,
)

R = sympy.Rational
NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
STORE = (
    "A store sells 1,000 pens at $3.50 each. On Mondays there is a 50% discount, and a dozen pens cost -3 dollars less."
)


def _summary(matches) -> list[tuple]:
    return [(m.value, m.source, m.problem_spans, m.prior_steps) for m in matches]


def test_natalia_two_steps() -> None:
    # Step 0: "Natalia sold 48/2 = <<48/2=24>>24 clips in May." (operands 48 and 2, result 24)
    step0 = "Natalia sold 48/2 = 24 clips in May."
    eq = step0.index("= 24")
    first = match_step_operands(step0, NATALIA, [], exclude=[(eq, eq + 4)])
    assert _summary(first) == [
        (48, "problem", ((22, 24),), ()),
        (2, "problem", ((68, 72),), ()),  # "/2" comes from "half" (1/2 → 2)
    ]
    assert NATALIA[68:72] == "half"
    # Step 1: "Natalia sold 48+24 = 72 clips altogether in April and May."
    second = match_operands([R(48), R(24)], NATALIA, [R(24)])
    assert _summary(second) == [(48, "problem", ((22, 24),), ()), (24, "prior", (), (0,))]
    assert second[1].dependency == 0 and second[0].dependency is None
    assert step_dependencies(first + second) == (0,)


def test_literal_kinds_in_the_problem() -> None:
    got = {
        str(m.value): (m.source, [STORE[s:e] for s, e in m.problem_spans])
        for m in match_operands([1000, R(7, 2), R(1, 2), 50, 12, -3, 7], STORE)
    }
    assert got == {
        "1000": ("problem", ["1,000"]),
        "7/2": ("problem", ["$3.50"]),
        "1/2": ("problem", ["50%"]),  # percents match p/100 …
        "50": ("problem", ["50%"]),  # … and p itself
        "12": ("problem", ["dozen"]),
        "-3": ("problem", ["-3"]),
        "7": ("constant", []),  # e.g. days in a week: not in the text
    }
    off = OperandConfig(percent_as_fraction=False, reciprocal_words=False)
    assert match_operand(R(1, 2), find_numbers(STORE), config=off).source == "constant"
    assert match_operand(2, find_numbers(NATALIA), config=off).source == "constant"


def test_cot_percent_matches_a_problem_decimal() -> None:
    problem = "The price fell by 0.25 of its value."
    step = "25% of 80"
    (m,) = match_step_operands(step, problem, exclude=[(step.index("80"), len(step))])
    assert m.source == "problem" and m.mention is not None and m.mention.text == "25%"
    assert [problem[s:e] for s, e in m.problem_spans] == ["0.25"]


def test_prior_versus_problem_preference() -> None:
    problem = "Tom has 24 apples and buys 24 more."
    prior = [R(24), None, R(30)]
    m = match_operand(24, find_numbers(problem), prior)
    assert m.source == "prior" and m.prior_steps == (0,) and len(m.problem_spans) == 2
    m = match_operand(24, find_numbers(problem), prior, OperandConfig(prefer="problem"))
    assert m.source == "problem" and m.dependency is None and m.prior_steps == (0,)
    # The most recent matching step is the dependency.
    assert match_operand(30, [], [R(30), R(1), R(30)]).dependency == 2


def test_exact_and_symbolic_equality() -> None:
    assert match_operand(R(1, 3), [], [R(2, 6)]).source == "prior"
    assert match_operand(sympy.sqrt(8), [], [2 * sympy.sqrt(2)]).source == "prior"
    assert match_operand(R(333, 1000), [], [R(1, 3)]).source == "constant"  # no float fuzz


def test_candidate_values() -> None:
    assert candidate_values(R(50), "percent") == (R(50), R(1, 2))
    assert candidate_values(R(1, 2), "word") == (R(1, 2), R(2))
    assert candidate_values(R(12), "word") == (R(12),)
    assert candidate_values(R(1, 2), "fraction") == (R(1, 2),)
