"""Mathematical answer equivalence (math-verify, behind input guards).

``equivalent(answer, gold)`` decides whether two final answers are the same
mathematical object: fractions vs decimals, radicals, π, percents (``50\\%``
equals both ``0.5`` and ``50``), ordered tuples vs unordered sets, intervals,
``x = 3`` vs ``3``, ``\\dfrac``/``\\tfrac``, thousands separators, units and
``\\text{…}`` answers.  The heavy lifting is math-verify's LaTeX path
(latex2sympy2_extended, a real parser; its plain-expression path, which uses
``parse_expr``, is never enabled).

Guards run first: length, nesting depth, TeX macro definitions, and — after
parsing, before any comparison — a bound on the size of every number the
comparison could produce (``10^{10^{10}}`` is refused, not computed).
math-verify's signal-based timeouts are used only in the main thread; in
worker threads they are off and the guards bound the work.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from fractions import Fraction

import sympy

from app.execution.errors import (
    ExecutionError, ExponentTooLarge, ForbiddenInput, InputTooLong, TooComplex, TooDeep,
)
from app.execution.limits import DEFAULT_LIMITS, Limits

__all__ = ["equivalent", "normalize_answer", "check_answer_text", "guard_sympy"]

logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("math_verify.grader").setLevel(logging.ERROR)
logging.getLogger("math_verify.parser").setLevel(logging.ERROR)

MAX_ANSWER_CHARS = 1_000
_FORBIDDEN_RE = re.compile(
    r"\\(?:def|edef|gdef|xdef|let|newcommand|renewcommand|providecommand|DeclareMathOperator"
    r"|csname|catcode|expandafter|input|include|usepackage|write|immediate|openout|read)(?![A-Za-z])")
_FACTORIAL_RE = re.compile(r"\\[dt]?binom|\\choose|!")
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_SPACING_RE = re.compile(r"\\[!,;: ]|\\q?quad")


def check_answer_text(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse over-long, over-nested or macro-defining answer text (typed errors)."""
    if len(text) > MAX_ANSWER_CHARS:
        raise InputTooLong(f"answer of {len(text)} chars > {MAX_ANSWER_CHARS}")
    if _FORBIDDEN_RE.search(text):
        raise ForbiddenInput("TeX macro definitions and file commands are not accepted")
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
            if depth > limits.max_depth:
                raise TooDeep(f"nesting > {limits.max_depth}")
        elif char in ")]}":
            depth -= 1
    if _FACTORIAL_RE.search(text) and (re.search(r"\d{5,}", text) or "^" in text):
        raise ExponentTooLarge("factorial/binomial of a possibly huge number")


def normalize_answer(text: str) -> str:
    """Cosmetic normalisation: math delimiters, spacing commands, ``\\dfrac``, trailing dot."""
    cleaned = text.strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if cleaned.startswith(opener) and cleaned.endswith(closer) and len(cleaned) >= 2 * len(opener):
            cleaned = cleaned[len(opener):len(cleaned) - len(closer)].strip()
    cleaned = _SPACING_RE.sub(" ", cleaned)
    cleaned = cleaned.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    cleaned = cleaned.replace("\\left", "").replace("\\right", "")
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    return cleaned.rstrip(".").strip()


def _plain_number(text: str) -> Fraction | None:
    if _PLAIN_NUMBER_RE.fullmatch(text):
        return Fraction(text.replace(",", ""))
    return None


def equivalent(answer: str, gold: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether ``answer`` is mathematically the same as ``gold``.

    Raises a typed :class:`~app.execution.errors.ExecutionError` for hostile
    input (too long, too deep, macro definitions, numbers too large to compare).
    """
    check_answer_text(answer, limits)
    check_answer_text(gold, limits)
    left, right = normalize_answer(answer), normalize_answer(gold)
    if left == right:
        return True
    left_number, right_number = _plain_number(left), _plain_number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    return _verify(left, right, limits)


def _verify(answer: str, gold: str, limits: Limits) -> bool:
    from math_verify import LatexExtractionConfig, parse, verify

    in_main_thread = threading.current_thread() is threading.main_thread()
    seconds = 5 if in_main_thread else None
    config = [LatexExtractionConfig(boxed_match_priority=0)]
    parsed_gold = parse("\\boxed{" + gold + "}", config, parsing_timeout=seconds)  # type: ignore[arg-type]
    parsed_answer = parse("\\boxed{" + answer + "}", config, parsing_timeout=seconds)  # type: ignore[arg-type]
    if not parsed_gold or not parsed_answer:
        return False
    for item in (*parsed_gold, *parsed_answer):
        if isinstance(item, sympy.Basic):
            guard_sympy(item, limits)
    try:
        return bool(verify(parsed_gold, parsed_answer, timeout_seconds=seconds))  # type: ignore[arg-type]
    except ExecutionError:
        raise
    except Exception:  # math-verify failing on odd objects means "not shown equal"
        return False


def guard_sympy(expr: sympy.Basic, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse trees whose numbers could grow beyond ``limits`` when evaluated."""
    budget = [limits.max_nodes * 10]
    bits = _log2_bound(expr, limits, budget, 0)
    if bits > limits.max_value_bits:
        raise ExponentTooLarge(f"value may need ~{int(bits)} bits")


def _log2_int(value: int) -> float:
    """log2(|value| + 2), exact enough for small ints, by bit length for huge ones."""
    magnitude = abs(value)
    if magnitude.bit_length() > 1000:
        return float(magnitude.bit_length())
    return math.log2(magnitude + 2)


def _log2_bound(expr: sympy.Basic, limits: Limits, budget: list[int], depth: int) -> float:
    """An upper bound on log2(|value| + 2) of a sympy tree (symbols count as small)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise TooComplex("expression tree too large")
    if depth > limits.max_depth * 2:
        raise TooDeep("expression tree too deep")
    if isinstance(expr, sympy.Rational):
        return max(_log2_int(int(expr.p)), _log2_int(int(expr.q)))
    if isinstance(expr, sympy.Float):
        value = abs(float(expr))
        return math.log2(value + 2) if math.isfinite(value) else 64.0
    args = [arg for arg in expr.args if isinstance(arg, sympy.Basic)]
    if not args:
        return 2.0
    bounds = [_log2_bound(arg, limits, budget, depth + 1) for arg in args]
    if isinstance(expr, sympy.Pow) and len(bounds) == 2:
        exponent_bits = bounds[1]
        if exponent_bits > math.log2(limits.max_exponent) + 1:
            raise ExponentTooLarge(f"exponent may reach 2**{int(exponent_bits)}")
        return bounds[0] * (2 ** exponent_bits)
    if isinstance(expr, (sympy.factorial, sympy.factorial2, sympy.binomial, sympy.gamma)):
        argument_bits = max(bounds)
        if argument_bits > math.log2(limits.max_factorial) + 1:
            raise ExponentTooLarge("factorial/binomial argument too large")
        n = 2 ** argument_bits
        return n * math.log2(n + 2)
    if isinstance(expr, sympy.Mul):
        return sum(bounds)
    if isinstance(expr, sympy.Add):
        return max(bounds) + math.log2(len(bounds) + 1)
    return max(bounds) + 1
