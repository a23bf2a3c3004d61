"""The whitelisted operations and their bounded sympy semantics.

This module is the only place where values are computed.  Each operation takes
already-computed sympy numbers; sizes are checked *before* sympy is asked to do
anything expensive (exponent size, factorial size, digit counts), so hostile
programs fail fast with a typed error.  Nothing here parses untrusted text with
``eval``/``sympify``: literals go through :func:`parse_literal` (a regex).
"""

from __future__ import annotations

import re
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction

import sympy

from app.execution.errors import (
    DivisionByZero, ExponentTooLarge, InvalidProgram, NoSolution, NonNumeric,
    NumberTooLarge, TooComplex, UnsupportedOperation,
)
from app.execution.expression import CONSTANTS, OP_ARITY, Apply, Const, Node, Num, Var
from app.execution.limits import DEFAULT_LIMITS, Deadline, Limits

__all__ = ["evaluate_op", "evaluate_tree", "parse_literal", "solve_equation",
           "check_value", "format_value"]

_LITERAL_RE = re.compile(r"(?P<sign>-)?(?P<num>\d+(?:\.\d+)?|\.\d+)(?:/(?P<den>\d+))?(?P<pct>%)?")


def parse_literal(text: str) -> sympy.Expr:
    """Value of an operand literal: ``"48"``, ``"-3.5"``, ``"3/4"``, ``"60%"``, ``"pi"``, ``"E"``."""
    if text in CONSTANTS:
        return CONSTANTS[text]
    match = _LITERAL_RE.fullmatch(text.strip())
    if match is None or len(text) > 200:
        raise InvalidProgram(f"bad literal {text[:40]!r}")
    value = Fraction(match.group("num"))
    if match.group("den"):
        denominator = int(match.group("den"))
        if denominator == 0:
            raise DivisionByZero(f"literal {text!r}")
        value /= denominator
    if match.group("pct"):
        value /= 100
    if match.group("sign"):
        value = -value
    return sympy.Rational(value.numerator, value.denominator)


def check_value(value: sympy.Expr, limits: Limits = DEFAULT_LIMITS) -> sympy.Expr:
    """Accept only finite real numbers of bounded size; return ``value``."""
    if value is sympy.nan or value in (sympy.zoo, sympy.oo, -sympy.oo):
        raise DivisionByZero(f"undefined value {value}")
    if isinstance(value, sympy.Rational):
        if max(int(value.p).bit_length(), int(value.q).bit_length()) > limits.max_value_bits:
            raise NumberTooLarge(f"more than {limits.max_value_bits} bits")
        return value
    if not isinstance(value, sympy.Expr) or not value.is_number:
        raise NonNumeric(f"not a number: {str(value)[:60]}")
    nodes = 0
    for sub in sympy.preorder_traversal(value):
        nodes += 1
        if nodes > limits.max_nodes:
            raise TooComplex("value expression too large")
        if isinstance(sub, sympy.Rational) and max(
                int(sub.p).bit_length(), int(sub.q).bit_length()) > limits.max_value_bits:
            raise NumberTooLarge(f"more than {limits.max_value_bits} bits")
    if value.is_real is False:
        raise NonNumeric(f"not real: {str(value)[:60]}")
    return value


def _bits(value: sympy.Expr) -> int:
    """Rough size in bits of a number (rationals exactly, others via a float estimate)."""
    if isinstance(value, sympy.Rational):
        return max(int(value.p).bit_length(), int(value.q).bit_length())
    magnitude = abs(complex(value.evalf(15)))  # bounded: value passed check_value
    if magnitude == 0.0 or math.isinf(magnitude) or math.isnan(magnitude):
        return 1
    return int(abs(math.log2(magnitude))) + 1


def _integer(value: sympy.Expr, what: str, bound: int) -> int:
    if not (isinstance(value, sympy.Integer)):
        raise UnsupportedOperation(f"{what} needs an integer, got {value}")
    if not 0 <= int(value) <= bound:
        raise ExponentTooLarge(f"{what} of {value} (bound {bound})")
    return int(value)


def _power(base: sympy.Expr, exponent: sympy.Expr, limits: Limits) -> sympy.Expr:
    if isinstance(exponent, sympy.Integer):
        n = int(exponent)
        if abs(n) > limits.max_exponent or _bits(base) * abs(n) > limits.max_value_bits:
            raise ExponentTooLarge(f"{base}**{n}")
        if base == 0 and n < 0:
            raise DivisionByZero("0 to a negative power")
        return sympy.Pow(base, exponent)
    if isinstance(exponent, sympy.Rational):
        if abs(exponent.p) > limits.max_exponent or exponent.q > 64 \
                or _bits(base) * abs(exponent.p) > limits.max_value_bits:
            raise ExponentTooLarge(f"{base}**{exponent}")
        if base == 0 and exponent < 0:
            raise DivisionByZero("0 to a negative power")
        if base.is_negative:
            raise NonNumeric(f"fractional power of negative {base}")
        return sympy.Pow(base, exponent)
    estimate = float(exponent.evalf(15))
    if abs(estimate) > limits.max_exponent:
        raise ExponentTooLarge(f"{base}**{exponent}")
    if base.is_negative:
        raise NonNumeric(f"irrational power of negative {base}")
    return sympy.Pow(base, exponent)


def evaluate_op(op: str, args: Sequence[sympy.Expr], limits: Limits = DEFAULT_LIMITS) -> sympy.Expr:
    """Apply one whitelisted operation to sympy numbers (see :data:`OP_ARITY`)."""
    if op not in OP_ARITY or op == "EQUATION":
        raise UnsupportedOperation(f"op {op!r}")
    low, high = OP_ARITY[op]
    if len(args) < low or (high is not None and len(args) > high):
        raise InvalidProgram(f"{op} takes {low}..{high} operands, got {len(args)}")
    for arg in args:
        check_value(arg, limits)
    result: sympy.Expr
    if op == "ADD":
        result = sympy.Add(*args)
    elif op == "MUL":
        result = sympy.Mul(*args)
    elif op == "SUB":
        result = args[0] - sympy.Add(*args[1:])
    elif op == "DIV":
        divisor = sympy.Mul(*args[1:])
        if divisor == 0:
            raise DivisionByZero("division by zero")
        result = args[0] / divisor
    elif op == "POW":
        result = _power(args[0], args[1], limits)
    elif op == "NEG":
        result = -args[0]
    elif op == "SQRT":
        result = _power(args[0], sympy.Rational(1, 2), limits)
    elif op == "ROOT":
        degree = _integer(args[1], "root degree", 64)
        if degree == 0:
            raise DivisionByZero("0th root")
        result = _power(args[0], sympy.Rational(1, degree), limits)
    elif op == "FACTORIAL":
        result = sympy.factorial(_integer(args[0], "factorial", limits.max_factorial))
    elif op == "BINOMIAL":
        n = _integer(args[0], "binomial", limits.max_factorial)
        k = _integer(args[1], "binomial", limits.max_factorial)
        result = sympy.binomial(n, k)
    elif op == "ABS":
        result = sympy.Abs(args[0])
    elif op == "MOD":
        if not all(isinstance(arg, sympy.Integer) for arg in args):
            raise UnsupportedOperation("MOD needs integers")
        if args[1] == 0:
            raise DivisionByZero("modulo zero")
        result = sympy.Mod(args[0], args[1])
    elif op == "FLOOR":
        result = sympy.floor(args[0])
    elif op == "CEIL":
        result = sympy.ceiling(args[0])
    elif op == "SELECT":
        result = args[0]
    else:  # TO_PERCENT
        result = args[0] * 100
    return check_value(result, limits)


def evaluate_tree(node: Node, limits: Limits = DEFAULT_LIMITS,
                  deadline: Deadline | None = None,
                  variables: dict[str, sympy.Symbol] | None = None,
                  numbers: Iterator[sympy.Expr] | None = None) -> sympy.Expr:
    """Value of an expression tree.

    Unknowns are allowed only when ``variables`` maps them to symbols.  When
    ``numbers`` is given, the tree's number literals take its values in
    left-to-right order instead of their written values (how the executor
    re-solves an equation from its operands).
    """
    if deadline is not None:
        deadline.check("evaluating expression")
    if isinstance(node, Num):
        if numbers is not None:
            try:
                return check_value(next(numbers), limits)
            except StopIteration:
                raise InvalidProgram("fewer operands than numbers in the equation") from None
        return check_value(node.value, limits)
    if isinstance(node, Const):
        return CONSTANTS[node.name]
    if isinstance(node, Var):
        if variables is None or node.name not in variables:
            raise NonNumeric(f"unknown {node.name!r}")
        return variables[node.name]
    values = [evaluate_tree(arg, limits, deadline, variables, numbers) for arg in node.args]
    if variables is not None and any(value.free_symbols for value in values):
        return _symbolic_op(node.op, values, limits)
    return evaluate_op(node.op, values, limits)


def _symbolic_op(op: str, args: list[sympy.Expr], limits: Limits) -> sympy.Expr:
    """The few operations allowed on expressions with an unknown (equations only)."""
    if op == "ADD":
        return sympy.Add(*args)
    if op == "MUL":
        return sympy.Mul(*args)
    if op == "SUB":
        return args[0] - sympy.Add(*args[1:])
    if op == "NEG":
        return -args[0]
    if op == "DIV":
        if any(arg == 0 for arg in args[1:]):
            raise DivisionByZero("division by zero")
        return args[0] / sympy.Mul(*args[1:])
    if op == "POW" and isinstance(args[1], sympy.Integer) and 0 <= int(args[1]) <= 2:
        return sympy.Pow(args[0], args[1])
    raise UnsupportedOperation(f"{op} on an unknown")


def solve_equation(lhs: Node, rhs: Node, limits: Limits = DEFAULT_LIMITS,
                   deadline: Deadline | None = None,
                   numbers: Sequence[sympy.Expr] | None = None) -> sympy.Expr:
    """The unique usable solution of ``lhs = rhs`` in its single unknown.

    Only rational equations whose numerator is a polynomial of degree <= 2 in
    the unknown are solved.  With two real roots the positive one is taken
    when exactly one is positive (word problems count things).
    """
    names = sorted(_variables(lhs) | _variables(rhs))
    if len(names) != 1:
        raise NoSolution(f"expected one unknown, found {names}")
    symbol = sympy.Symbol(names[0])
    stream = iter(numbers) if numbers is not None else None
    left = evaluate_tree(lhs, limits, deadline, {names[0]: symbol}, stream)
    right = evaluate_tree(rhs, limits, deadline, {names[0]: symbol}, stream)
    if stream is not None and next(stream, None) is not None:
        raise InvalidProgram("more operands than numbers in the equation")
    difference = sympy.together(left - right)
    numerator, denominator = sympy.fraction(difference)
    try:
        polynomial = sympy.Poly(sympy.expand(numerator), symbol)
    except sympy.PolynomialError as error:
        raise NoSolution(str(error)) from error
    if polynomial.degree() < 1 or polynomial.degree() > 2:
        raise NoSolution(f"degree {polynomial.degree()}")
    roots = [root for root in sympy.roots(polynomial, symbol)
             if root.is_real and denominator.subs(symbol, root) != 0]
    if len(roots) == 2:
        positive = [root for root in roots if root.is_positive]
        roots = positive if len(positive) == 1 else roots
    if len(roots) != 1:
        raise NoSolution(f"{len(roots)} real solutions")
    return check_value(roots[0], limits)


def _variables(node: Node) -> set[str]:
    if isinstance(node, Var):
        return {node.name}
    if isinstance(node, Apply):
        return set().union(*(_variables(arg) for arg in node.args))
    return set()


def format_value(value: sympy.Expr) -> str:
    """Canonical text of a value: ``"24"``, ``"7/2"``, ``"2*sqrt(3)"``."""
    return str(value)
