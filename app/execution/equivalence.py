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
from app.execution.arith_parser import check_bracket_depth
from app.execution.limits import DEFAULT_LIMITS, Limits

__all__ = ["equivalent", "self_equivalent", "parses_to_math", "normalize_answer",
           "check_answer_text", "guard_sympy"]

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
    check_bracket_depth(text, limits)
    if _FACTORIAL_RE.search(text) and (re.search(r"\d{5,}", text) or "^" in text):
        raise ExponentTooLarge("factorial/binomial of a possibly huge number")


_THIN_THOUSANDS_RE = re.compile(r"(?<=\d),\\!(?=\d{3}(?!\d))")
_PHANTOM_RE = re.compile(r"\\phantom\s*(?:\{[^{}]*\}|\S)")
_BARE_FRAC_RE = re.compile(r"\\frac\s*(\\[A-Za-z]+|[^\s{\\])\s*(\\[A-Za-z]+|[^\s{\\])")


def normalize_answer(text: str) -> str:
    """Cosmetic normalisation: delimiters, spacing, ``\\dfrac``, ``1,\\!000``, trailing punctuation.

    Also drops ``\\phantom{…}`` and a leading ``\\approx``, and braces bare
    ``\\frac\\pi 2`` arguments.
    """
    cleaned = _THIN_THOUSANDS_RE.sub("", text.strip()).rstrip(".,").strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if cleaned.startswith(opener) and cleaned.endswith(closer) and len(cleaned) >= 2 * len(opener):
            cleaned = cleaned[len(opener):len(cleaned) - len(closer)].strip()
    cleaned = _SPACING_RE.sub(" ", cleaned)
    cleaned = _PHANTOM_RE.sub("", cleaned)
    cleaned = re.sub(r"^\\approx\s*", "", cleaned)
    cleaned = cleaned.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    cleaned = _BARE_FRAC_RE.sub(r"\\frac{\1}{\2}", cleaned)
    cleaned = cleaned.replace("\\left", "").replace("\\right", "")
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    return cleaned.rstrip(".,").strip()


def _plain_number(text: str) -> Fraction | None:
    if _PLAIN_NUMBER_RE.fullmatch(text):
        return Fraction(text.replace(",", ""))
    return None


def equivalent(answer: str, gold: str, limits: Limits = DEFAULT_LIMITS, *,
               text_shortcut: bool = True) -> bool:
    """Whether ``answer`` is mathematically the same as ``gold``.

    With ``text_shortcut`` equal normalised texts and equal plain numbers are
    decided without parsing.  Text that math-verify cannot parse at all is
    compared as normalised text.  Raises a typed
    :class:`~app.execution.errors.ExecutionError` for hostile input (too long,
    too deep, macro definitions, numbers too large to compare).
    """
    check_answer_text(answer, limits)
    check_answer_text(gold, limits)
    left, right = normalize_answer(answer), normalize_answer(gold)
    if text_shortcut:
        if left == right:
            return True
        left_number, right_number = _plain_number(left), _plain_number(right)
        if left_number is not None and right_number is not None:
            return left_number == right_number
    parsed_gold = _parse(right, limits) if right else []
    parsed_answer = _parse(left, limits) if left else []
    if not parsed_gold or not parsed_answer:
        return left == right
    return _verify_parsed(parsed_gold, parsed_answer)


def self_equivalent(gold: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """``equivalent(gold, gold)`` through the parser, without the text shortcut.

    This is what "gold ≡ gold" is meant to establish: the answer survives the
    full equivalence path (parse, guards, verify).
    """
    return equivalent(gold, gold, limits, text_shortcut=False)


def parses_to_math(answer: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether math-verify turns ``answer`` into a sympy object (not just text)."""
    check_answer_text(answer, limits)
    normalized = normalize_answer(answer)
    parsed = _parse(normalized, limits) if normalized else []
    return any(isinstance(item, (sympy.Basic, sympy.MatrixBase)) for item in parsed)


def _seconds() -> int | None:
    """math-verify's signal timeouts work only in the main thread; elsewhere: off."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(text: str, limits: Limits) -> list[object]:
    from math_verify import LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0)]
    parsed = parse("\\boxed{" + text + "}", config, parsing_timeout=_seconds())  # type: ignore[arg-type]
    for item in parsed:
        if isinstance(item, sympy.MatrixBase):
            for element in item:
                guard_sympy(element, limits)
        elif isinstance(item, sympy.Basic):
            guard_sympy(item, limits)
    return list(parsed)


def _verify_parsed(gold: list[object], answer: list[object]) -> bool:
    from math_verify import verify

    try:
        return bool(verify(gold, answer, timeout_seconds=_seconds()))  # type: ignore[arg-type]
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
