"""Find the computations of a LaTeX CoT (MATH style) through latex2sympy2_extended.

Math segments (``$…$``, ``$$…$$``, ``\\[…\\]``, ``\\(…\\)``, ``align``/``equation``
environments, one line per ``\\\\``) are split at ``=``; for every adjacent pair
``A = B`` where ``A`` is a numeric expression with at least one operation and
``B`` is numeric, both are parsed by the real LaTeX parser, and the pair is kept
only if sympy evaluates ``A`` (within bounds) to the value of ``B`` — a parse is
kept only if sympy can evaluate it.  ``\\boxed{…}`` around ``B`` is unwrapped;
the box is never used as an answer here.

The expression tree follows latex2sympy's output: integer fractions such as
``\\frac{48}{2}`` arrive as one literal (24), sums arrive reordered (negative
terms become a ``SUB``).  Parts with letters other than whitelisted commands
(``\\frac``, ``\\sqrt``, ``\\cdot``, ``\\times``, ``\\div``, ``\\binom``, ``\\pi``,
``\\left``/``\\right``, ``\\%``) are not numeric and are skipped before parsing,
which also bounds the parser's work.  Offsets are char offsets into the CoT.
"""

from __future__ import annotations

import re

import sympy
from sympy.core.parameters import evaluate

from app.execution.arith_parser import parse_number_token
from app.execution.computation import Computation
from app.execution.equivalence import check_answer_text, guard_sympy
from app.execution.errors import ExecutionError, ForbiddenInput, InputTooLong, UnsupportedOperation
from app.execution.expression import Apply, Const, Node, Num
from app.execution.limits import DEFAULT_LIMITS, Deadline, Limits
from app.execution.operations import evaluate_tree

__all__ = ["find_latex_computations", "latex_to_tree", "math_segments"]

MAX_PART_CHARS = 200
MAX_PARSES_PER_DOCUMENT = 300
_SEGMENT_RE = re.compile(
    r"\$\$(?P<display>.+?)\$\$|\$(?P<inline>[^$]+?)\$|\\\[(?P<bracket>.+?)\\\]|\\\((?P<paren>.+?)\\\)"
    r"|\\begin\{(?P<env>align\*?|equation\*?|eqnarray\*?|gather\*?|multline\*?)\}(?P<body>.+?)\\end\{(?P=env)\}",
    re.DOTALL)
_FORBIDDEN_RE = re.compile(r"\\(?:def|edef|gdef|xdef|let|newcommand|renewcommand|providecommand"
                           r"|csname|catcode|expandafter|input|include|usepackage)(?![A-Za-z])")
_LAYOUT_RE = re.compile(r"\\renewcommand\{\\arraystretch\}\{[\d.]+\}")  # harmless table layout
_ALLOWED_COMMANDS_RE = re.compile(
    r"\\(?:[dt]?frac|sqrt|cdot|times|div|left|right|[dt]?binom|pi|%|[,;! ]|q?quad)(?![A-Za-z])")
_NUMERIC_CHARS_RE = re.compile(r"[\d\s+\-*/^(){}\[\].,!|%]*")
_BOX_RE = re.compile(r"^\\(?:boxed|fbox)\{(.*)\}$", re.DOTALL)
_PLAIN_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def math_segments(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` char offsets of every math line in ``text`` (inner content only)."""
    spans: list[tuple[int, int]] = []
    for match in _SEGMENT_RE.finditer(text):
        group = next(name for name in ("display", "inline", "bracket", "paren", "body")
                     if match.group(name) is not None)
        start, end = match.start(group), match.end(group)
        line_start = start
        for line_break in re.finditer(r"\\\\", text[start:end]):
            spans.append((line_start, start + line_break.start()))
            line_start = start + line_break.end()
        spans.append((line_start, end))
    return spans


def _is_numeric_latex(part: str) -> bool:
    stripped = _ALLOWED_COMMANDS_RE.sub(" ", part)
    return bool(re.search(r"\d", part)) and _NUMERIC_CHARS_RE.fullmatch(stripped) is not None


def _unbox(part: str) -> str:
    match = _BOX_RE.match(part.strip())
    return match.group(1) if match else part


def _parse_latex(part: str, limits: Limits) -> sympy.Expr:
    """latex2sympy under input guards (length, macros, nesting, factorial size, tree size)."""
    from latex2sympy2_extended import latex2sympy

    check_answer_text(part, limits)
    with evaluate(False):  # keep \binom, powers and products as written
        expression = latex2sympy(part, normalization_config=None)
    if not isinstance(expression, sympy.Expr):
        raise UnsupportedOperation(f"not an expression: {type(expression).__name__}")
    guard_sympy(expression, limits)
    return expression


def latex_to_tree(expression: sympy.Basic, depth: int = 0, limits: Limits = DEFAULT_LIMITS) -> Node:
    """Convert a numeric sympy tree (from latex2sympy) into an expression tree.

    Raises :class:`UnsupportedOperation` for anything outside the whitelist
    (symbols, trigonometry, logarithms, sets, ...).
    """
    if depth > limits.max_depth:
        raise UnsupportedOperation("tree too deep")
    if isinstance(expression, sympy.Rational):
        return Num(expression, str(expression))
    if isinstance(expression, sympy.Float):
        value = sympy.Rational(str(expression))
        text = str(expression).rstrip("0").rstrip(".")
        return Num(sympy.Rational(text) if text else value, text or str(value))
    if expression is sympy.pi:
        return Const("pi")
    if expression is sympy.E:
        return Const("E")
    if isinstance(expression, sympy.Add):
        return _add_to_tree(expression, depth, limits)
    if isinstance(expression, sympy.Mul):
        return _mul_to_tree(expression, depth, limits)
    if isinstance(expression, sympy.Pow):
        base, exponent = expression.args
        base_tree = latex_to_tree(base, depth + 1, limits)
        if exponent == sympy.Rational(1, 2):
            return Apply("SQRT", (base_tree,))
        if exponent == -1:
            return Apply("DIV", (Num(sympy.Integer(1), "1"), base_tree))
        if isinstance(exponent, sympy.Rational) and exponent.p == 1 and exponent.q > 1:
            return Apply("ROOT", (base_tree, Num(sympy.Integer(exponent.q), str(exponent.q))))
        return Apply("POW", (base_tree, latex_to_tree(exponent, depth + 1, limits)))
    simple = {sympy.factorial: "FACTORIAL", sympy.Abs: "ABS", sympy.floor: "FLOOR",
              sympy.ceiling: "CEIL", sympy.binomial: "BINOMIAL"}
    for kind, op in simple.items():
        if isinstance(expression, kind):
            return Apply(op, tuple(latex_to_tree(arg, depth + 1, limits) for arg in expression.args))
    raise UnsupportedOperation(f"{type(expression).__name__} is not whitelisted")


def _negated(term: sympy.Basic) -> sympy.Basic | None:
    """``-t`` written as a term of a sum, or ``None`` when the term is positive."""
    if isinstance(term, sympy.Number) and term < 0:
        return -term
    if isinstance(term, sympy.Mul) and isinstance(term.args[0], sympy.Number) and term.args[0] < 0:
        coefficient = -term.args[0]
        rest = term.args[1:]
        if coefficient == 1:
            return rest[0] if len(rest) == 1 else sympy.Mul(*rest, evaluate=False)
        return sympy.Mul(coefficient, *rest, evaluate=False)
    return None


def _add_to_tree(expression: sympy.Add, depth: int, limits: Limits) -> Node:
    positive: list[Node] = []
    negative: list[Node] = []
    for term in expression.args:
        negated = _negated(term)
        if negated is None:
            positive.append(latex_to_tree(term, depth + 1, limits))
        else:
            negative.append(latex_to_tree(negated, depth + 1, limits))
    if not positive:
        inner = negative[0] if len(negative) == 1 else Apply("ADD", tuple(negative))
        return Apply("NEG", (inner,))
    head = positive[0] if len(positive) == 1 else Apply("ADD", tuple(positive))
    return Apply("SUB", (head, *negative)) if negative else head


def _mul_to_tree(expression: sympy.Mul, depth: int, limits: Limits) -> Node:
    numerator: list[Node] = []
    denominator: list[Node] = []
    negative = False
    percent: Num | None = None
    for factor in expression.args:
        if isinstance(factor, sympy.UnevaluatedExpr) and factor.args[0] == sympy.Rational(1, 100):
            percent = Num(sympy.Rational(1, 100), "%", True)
            continue
        if factor == -1:
            negative = not negative
            continue
        if isinstance(factor, sympy.Pow) and factor.args[1] == -1:
            denominator.append(latex_to_tree(factor.args[0], depth + 1, limits))
            continue
        numerator.append(latex_to_tree(factor, depth + 1, limits))
    if percent is not None and len(numerator) == 1 and isinstance(numerator[0], Num) and not denominator:
        number = numerator[0]
        node: Node = Num(number.value / 100, f"{number.text}%", True)
    else:
        if percent is not None:
            denominator.append(Num(sympy.Integer(100), "100"))
        if not numerator:
            numerator.append(Num(sympy.Integer(1), "1"))
        head = numerator[0] if len(numerator) == 1 else Apply("MUL", tuple(numerator))
        if denominator:
            divisor = denominator[0] if len(denominator) == 1 else Apply("MUL", tuple(denominator))
            node = Apply("DIV", (head, divisor))
        else:
            node = head
    return Apply("NEG", (node,)) if negative else node


def find_latex_computations(text: str, limits: Limits = DEFAULT_LIMITS,
                            deadline: Deadline | None = None) -> list[Computation]:
    """Numeric ``A = B`` computations in the math of ``text`` (see the module docstring)."""
    if len(text) > limits.max_document_chars:
        raise InputTooLong(f"{len(text)} chars > {limits.max_document_chars}")
    if _FORBIDDEN_RE.search(_LAYOUT_RE.sub("", text)):
        raise ForbiddenInput("TeX macro definitions are not accepted")
    deadline = deadline or Deadline.after(limits.document_seconds)
    found: list[Computation] = []
    budget = [MAX_PARSES_PER_DOCUMENT]
    for start, end in math_segments(text):
        deadline.check("latex steps")
        found.extend(_segment_computations(text, start, end, limits, deadline, budget))
    return found


def _split_equals(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the parts of ``text[start:end]`` between top-level ``=`` signs."""
    parts: list[tuple[int, int]] = []
    depth = 0
    part_start = start
    for index in range(start, end):
        char = text[index]
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif char == "=" and depth == 0 and text[index - 1:index] not in ("<", ">", "!", "\\"):
            parts.append((part_start, index))
            part_start = index + 1
    parts.append((part_start, end))
    return parts


def _segment_computations(text: str, start: int, end: int, limits: Limits,
                          deadline: Deadline, budget: list[int]) -> list[Computation]:
    parts = _split_equals(text, start, end)
    if len(parts) < 2:
        return []
    found: list[Computation] = []
    parsed: dict[int, sympy.Expr | None] = {}

    def parse(index: int) -> sympy.Expr | None:
        if index not in parsed:
            part_start, part_end = parts[index]
            part = _unbox(text[part_start:part_end].replace("&", " ").strip().rstrip(".,;")).strip()
            parsed[index] = None
            if part and len(part) <= MAX_PART_CHARS and _is_numeric_latex(part) and budget[0] > 0:
                budget[0] -= 1
                try:
                    parsed[index] = _parse_latex(part, limits)
                except Exception:  # noqa: BLE001 - any parser failure means "not a step"
                    parsed[index] = None
        return parsed[index]

    for index in range(len(parts) - 1):
        deadline.check("latex part")
        left = parse(index)
        if left is None:
            continue
        right = parse(index + 1)
        if right is None:
            continue
        try:
            tree = latex_to_tree(left, 0, limits)
            if not isinstance(tree, Apply):
                continue
            value = evaluate_tree(tree, limits, deadline)
            claimed_tree = latex_to_tree(right, 0, limits)
            claimed_value = evaluate_tree(claimed_tree, limits, deadline)
            if not _same(value, claimed_value):
                continue
        except ExecutionError:
            continue
        claim_text = _unbox(text[parts[index + 1][0]:parts[index + 1][1]].strip().rstrip(".,;")).strip()
        claimed = (parse_number_token(claim_text) if _PLAIN_NUMBER_RE.fullmatch(claim_text)
                   else Num(claimed_value, claim_text) if isinstance(claimed_value, sympy.Rational)
                   else None)
        span_start, span_end = parts[index][0], parts[index + 1][1]
        found.append(Computation("value", tree, claimed, text[span_start:span_end].strip(),
                                 span_start, span_end, "latex"))
    return found


def _same(left: sympy.Expr, right: sympy.Expr) -> bool:
    """Exact equality of two bounded numbers (radicals and π included)."""
    if isinstance(left, sympy.Rational) and isinstance(right, sympy.Rational):
        return bool(left == right)
    try:
        return bool(sympy.simplify(left - right) == 0)
    except Exception:  # noqa: BLE001 - sympy failing to decide means "not shown equal"
        return False
