"""Operand matching (design §2.4): where does each number a CoT step uses come from?

An operand value is matched to
* **problem** occurrences — number mentions of the problem text (char spans), found by
  ``app.execution.numbers.find_numbers``; a percent ``p%`` matches ``p`` and ``p/100``,
  and (configurable) a word fraction ``1/n`` ("half") also matches ``n`` ("48/2");
* **prior** results — earlier steps whose result equals the value (a dependency edge);
* neither — an implicit **constant** (unit conversions, "7 days a week" not in the text).

Values are exact sympy numbers; char offsets index the problem text (``problem_mentions``)
or the step text (``mention``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sympy

from app.execution.numbers import NumberMention, find_numbers
from app.signals.config import OperandConfig

__all__ = [
    "OperandMatch",
    "candidate_values",
    "match_operand",
    "match_operands",
    "match_step_operands",
    "step_dependencies",
]

_HUNDRED = sympy.Integer(100)


@dataclass(frozen=True)
class OperandMatch:
    """Provenance of one operand of a CoT step.

    ``value``: the operand (exact).  ``source``: ``'problem'``, ``'prior'`` or ``'constant'``
    (when both a problem occurrence and an earlier result match, ``OperandConfig.prefer`` wins;
    both lists are still filled).  ``problem_mentions``: every matching number mention of the
    problem text (char offsets into the problem).  ``prior_steps``: indices of earlier steps
    whose result equals the value, ascending.  ``mention``: the operand's own mention in the
    step text, when it came from text.
    """

    value: sympy.Expr
    source: str
    problem_mentions: tuple[NumberMention, ...] = ()
    prior_steps: tuple[int, ...] = ()
    mention: NumberMention | None = None

    @property
    def problem_spans(self) -> tuple[tuple[int, int], ...]:
        """Char spans ``(start, end)`` of the matching problem mentions."""
        return tuple((m.start, m.end) for m in self.problem_mentions)

    @property
    def dependency(self) -> int | None:
        """The earlier step this operand depends on (the most recent match), if ``source == 'prior'``."""
        return self.prior_steps[-1] if self.source == "prior" and self.prior_steps else None


def candidate_values(value: sympy.Expr, kind: str, config: OperandConfig = OperandConfig()) -> tuple[sympy.Expr, ...]:
    """The values a number written as ``kind`` may stand for: itself; ``p/100`` for a percent;
    ``n`` for a word fraction ``1/n`` when ``reciprocal_words``."""
    out: list[sympy.Expr] = [sympy.sympify(value)]
    if kind == "percent" and config.percent_as_fraction:
        out.append(out[0] / _HUNDRED)
    if (
        kind == "word"
        and config.reciprocal_words
        and isinstance(out[0], sympy.Rational)
        and out[0].p == 1
        and out[0].q > 1
    ):
        out.append(sympy.Integer(out[0].q))
    return tuple(out)


def _equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    try:
        return bool(sympy.simplify(a - b) == 0)
    except (TypeError, ValueError, AttributeError):
        return False


def _any_equal(xs: Iterable[sympy.Expr], ys: Iterable[sympy.Expr]) -> bool:
    ys = tuple(ys)
    return any(_equal(x, y) for x in xs for y in ys)


def match_operand(
    value: sympy.Expr | int,
    problem_mentions: Sequence[NumberMention],
    prior_results: Sequence[sympy.Expr | None] = (),
    config: OperandConfig = OperandConfig(),
    mention: NumberMention | None = None,
) -> OperandMatch:
    """Match one operand value against the problem's mentions and the earlier steps' results.

    ``prior_results[i]`` is step i's result (``None`` when it has none).  When ``mention`` is
    given (the operand as written in the step), its kind widens the candidates too
    (a CoT "50%" matches a problem 0.5).
    """
    v = sympy.sympify(value)
    own = candidate_values(v, mention.kind, config) if mention is not None else (v,)
    in_problem = tuple(m for m in problem_mentions if _any_equal(own, candidate_values(m.value, m.kind, config)))
    priors = tuple(i for i, r in enumerate(prior_results) if r is not None and _any_equal(own, (sympy.sympify(r),)))
    if in_problem and priors:
        source = config.prefer
    elif priors:
        source = "prior"
    elif in_problem:
        source = "problem"
    else:
        source = "constant"
    return OperandMatch(v, source, in_problem, priors, mention)


def match_operands(
    operands: Sequence[sympy.Expr | int | NumberMention],
    problem_text: str,
    prior_results: Sequence[sympy.Expr | None] = (),
    config: OperandConfig = OperandConfig(),
) -> list[OperandMatch]:
    """Match a parsed step's operands (values, or ``NumberMention`` s from the step text)."""
    mentions = find_numbers(problem_text)
    out: list[OperandMatch] = []
    for op in operands:
        if isinstance(op, NumberMention):
            out.append(match_operand(op.value, mentions, prior_results, config, mention=op))
        else:
            out.append(match_operand(op, mentions, prior_results, config))
    return out


def match_step_operands(
    step_text: str,
    problem_text: str,
    prior_results: Sequence[sympy.Expr | None] = (),
    config: OperandConfig = OperandConfig(),
    exclude: Sequence[tuple[int, int]] = (),
) -> list[OperandMatch]:
    """Every number written in ``step_text`` → its match, in text order.

    ``exclude``: char spans of the step text to skip (e.g. the result after ``=``), so only
    operands are matched.
    """
    mentions = [m for m in find_numbers(step_text) if not any(s <= m.start and m.end <= e for s, e in exclude)]
    return match_operands(mentions, problem_text, prior_results, config)


def step_dependencies(matches: Iterable[OperandMatch]) -> tuple[int, ...]:
    """The earlier steps a step depends on (sorted, unique): the ``dependency`` of its operands."""
    return tuple(sorted({m.dependency for m in matches if m.dependency is not None}))
