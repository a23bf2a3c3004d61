"""Plain-arithmetic parser: grammar, typed errors, hostile input, fuzzing."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from app.execution.arith_parser import parse_arithmetic, parse_equation
from app.execution.errors import (
    ExecutionError, ExponentTooLarge, InputTooLong, ParseError, TooDeep,
)
from app.execution.expression import Apply, Num, Var
from app.execution.operations import evaluate_tree

R = sympy.Rational


def _value(text: str) -> sympy.Expr:
    return evaluate_tree(parse_arithmetic(text))


@pytest.mark.parametrize(("text", "expected"), [
    ("48/2", R(24)),
    ("48 / 2", R(24)),
    ("$5 x 3", R(15)),
    ("5x3", R(15)),
    ("12 × 4 ÷ 3 − 1", R(15)),
    ("60% * 40%", R(6, 25)),
    ("2(16)-8", R(24)),
    ("(12+36+72)/3", R(40)),
    ("100-50-30-15", R(5)),
    ("2^3^2", R(512)),
    ("2**10", R(1024)),
    ("-3+4", R(1)),
    ("10*.8", R(8)),
    ("1,000 * 2", R(2000)),
    ("3/4*300", R(225)),
    ("158 * 1 1/2", R(237)),
    ("560//10", R(56)),
    ("√(144)", R(12)),
    ("sqrt(16)", R(4)),
])
def test_values(text: str, expected: sympy.Expr) -> None:
    assert _value(text) == expected


def test_chains_fold_into_one_nary_operation() -> None:
    assert parse_arithmetic("100-50-30-15") == Apply("SUB", (
        Num(R(100), "100"), Num(R(50), "50"), Num(R(30), "30"), Num(R(15), "15")))
    assert parse_arithmetic("1+2+3") == Apply("ADD", (Num(R(1), "1"), Num(R(2), "2"), Num(R(3), "3")))
    nested = parse_arithmetic("10-(4-1)")
    assert isinstance(nested, Apply) and nested.op == "SUB" and len(nested.args) == 2


def test_proper_fraction_literal_versus_division() -> None:
    assert parse_arithmetic("3/4") == Num(R(3, 4), "3/4")
    assert parse_arithmetic("48/2") == Apply("DIV", (Num(R(48), "48"), Num(R(2), "2")))


def test_percent_and_money_literals() -> None:
    number = parse_arithmetic("25%")
    assert number == Num(R(1, 4), "25%", True)
    assert isinstance(number, Num) and number.literal == 25
    assert parse_arithmetic("$3.50") == Num(R(7, 2), "$3.50")


def test_equation() -> None:
    lhs, rhs = parse_equation("x+(2x-8)=40")
    assert rhs == Num(R(40), "40")
    assert isinstance(lhs, Apply) and lhs.op == "ADD" and lhs.args[0] == Var("x")
    with pytest.raises(ParseError):
        parse_equation("1 = 2 = 3")


@pytest.mark.parametrize("text", ["", "3 +", "(1", "1)", "2 3", "hello", "4 # 2", "1 = 2"])
def test_malformed_input_is_a_parse_error(text: str) -> None:
    with pytest.raises(ExecutionError) as raised:
        parse_arithmetic(text)
    assert raised.value.reason in {"parse_error", "too_deep"}


def test_hostile_inputs_fail_typed_and_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(ParseError):
        parse_arithmetic("__import__('os').system('ls')")
    with pytest.raises(ExponentTooLarge):
        _value("10**10**10")
    with pytest.raises(ExponentTooLarge):
        _value("2^99999")
    with pytest.raises(InputTooLong):
        parse_arithmetic("(" * 10_000 + "1" + ")" * 10_000)
    with pytest.raises(TooDeep):
        parse_arithmetic("(" * 100 + "1" + ")" * 100)
    with pytest.raises(TooDeep):
        parse_arithmetic("-" * 300 + "1")
    with pytest.raises(InputTooLong):
        parse_arithmetic("1+" * 500_000 + "1")
    assert time.perf_counter() - started < 5.0


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789+-*/^().,%$x× ÷−=abc√")), max_size=80))
def test_fuzz_parser_returns_tree_or_typed_error(text: str) -> None:
    try:
        tree = parse_arithmetic(text)
    except ExecutionError:
        return
    try:
        evaluate_tree(tree)
    except ExecutionError:
        return


_LEAVES = st.integers(min_value=0, max_value=999).map(str)


def _expressions(depth: int = 3) -> st.SearchStrategy[str]:
    if depth == 0:
        return _LEAVES
    smaller = _expressions(depth - 1)
    return st.one_of(_LEAVES, st.tuples(smaller, st.sampled_from(["+", "-", "*"]), smaller)
                     .map(lambda parts: f"({parts[0]} {parts[1]} {parts[2]})"))


def _reference(text: str) -> Fraction:
    """Independent evaluator for the fuzz oracle: +, -, * over fully parenthesised text."""
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    position = 0

    def expression() -> Fraction:
        nonlocal position
        token = tokens[position]
        position += 1
        if token != "(":
            return Fraction(int(token))
        left = expression()
        operator = tokens[position]
        position += 1
        right = expression()
        position += 1  # ")"
        return left + right if operator == "+" else left - right if operator == "-" else left * right

    return expression()


@settings(max_examples=200, deadline=None)
@given(_expressions())
def test_fuzz_values_match_an_independent_evaluator(text: str) -> None:
    expected = _reference(text)
    assert _value(text) == R(expected.numerator, expected.denominator)
