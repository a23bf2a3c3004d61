"""Find the computations of a plain-text CoT (GSM8K style).

Three sources, merged in CoT order:

* ``annotation`` — calculator annotations ``<<48/2=24>>`` (the left side is the
  expression, the right side the written result);
* ``arithmetic`` — plain arithmetic written without annotations, e.g.
  ``40 / 10 = 4 days``, ``$50 − $6 = $44``, ``0.2 x 50 = $10``,
  ``50 snowballs / 200 snowballs * 100% = 25%`` (unit words between a number
  and an operator are skipped; ``×``/``÷``/``−`` are operators);
* ``equation`` — one-unknown equations such as ``9s = 117`` or
  ``x+(2x-8)=40``, solved by the executor.

A plain computation that repeats an annotation next to it (``48/2 =
<<48/2=24>>24``) is dropped, and one whose value disagrees with its written
result (beyond the rounding of the written digits) is treated as a misparse and
dropped.  All offsets are char offsets into the CoT text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy

from app.execution.arith_parser import parse_arithmetic, parse_number_token
from app.execution.computation import Computation
from app.execution.errors import ExecutionError, InputTooLong
from app.execution.expression import Apply, Node, Num, Var, variables_in
from app.execution.limits import DEFAULT_LIMITS, Deadline, Limits
from app.execution.operations import evaluate_tree

__all__ = ["find_computations", "find_annotations"]

_ANNOTATION_RE = re.compile(r"<<([^<>\n]{0,500})>>")
_TEXT_TOKEN_RE = re.compile(
    r"(?P<num>(?:\$\s*)?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:\s?%)?)"
    r"|(?P<op>\*\*|[-+*/^×÷−–·⋅])"
    r"|(?P<lp>[(\[])|(?P<rp>[)\]])"
    r"|(?P<eq>=)"
    r"|(?P<word>[A-Za-z]+(?:'[A-Za-z]+)?)"
    r"|(?P<space>[ \t]+)"
    r"|(?P<other>.)"
)
_NOT_VARIABLES = frozenset({"a", "A", "I"})
_MAX_UNIT_WORDS = 3


@dataclass(frozen=True)
class _Tok:
    kind: str  # 'num' | 'op' | 'lp' | 'rp' | 'eq' | 'var' | 'word' | 'other'
    text: str
    start: int
    end: int
    attached: bool  # no whitespace before this token


def find_annotations(cot: str) -> list[tuple[int, int, str]]:
    """``(start, end, inner text)`` of every ``<<…>>`` annotation (char offsets)."""
    return [(m.start(), m.end(), m.group(1)) for m in _ANNOTATION_RE.finditer(cot)]


def find_computations(cot: str, limits: Limits = DEFAULT_LIMITS,
                      deadline: Deadline | None = None) -> list[Computation]:
    """All computations of ``cot`` in reading order (see the module docstring)."""
    if len(cot) > limits.max_document_chars:
        raise InputTooLong(f"{len(cot)} chars > {limits.max_document_chars}")
    deadline = deadline or Deadline.after(limits.document_seconds)
    annotations = find_annotations(cot)
    found: list[Computation] = []
    for start, end, inner in annotations:
        deadline.check("annotations")
        computation = _annotation_computation(inner, start, end, limits)
        if computation is not None:
            found.append(computation)
    masked = _mask(cot, annotations)
    offset = 0
    for line in masked.split("\n"):
        deadline.check("plain arithmetic")
        for computation in _line_computations(line, offset, limits, deadline):
            if not _repeats_annotation(computation, found, annotations):
                found.append(computation)
        offset += len(line) + 1
    found.sort(key=lambda c: c.start)
    return found


def _annotation_computation(inner: str, start: int, end: int,
                            limits: Limits) -> Computation | None:
    if "=" not in inner:
        return None
    left, right = inner.split("=", 1)
    right = right.split("=")[-1]
    try:
        tree = parse_arithmetic(left, limits)
        claimed = parse_number_token(right.strip()) if right.strip() else None
    except (ExecutionError, ValueError, ArithmeticError):
        return None
    if not isinstance(tree, Apply) or variables_in(tree):
        return None
    return Computation("value", tree, claimed, inner, start, end, "annotation")


def _mask(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each span replaced by spaces (offsets preserved)."""
    pieces: list[str] = []
    last = 0
    for start, end, _ in spans:
        pieces.append(text[last:start])
        pieces.append(" " * (end - start))
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _repeats_annotation(computation: Computation, found: list[Computation],
                        annotations: list[tuple[int, int, str]]) -> bool:
    """A plain computation that is the visible twin of an adjacent annotation."""
    for other in found:
        if other.source != "annotation":
            continue
        if other.start > computation.end + 2 or other.end < computation.start:
            continue
        if computation.claimed is None or other.claimed is None \
                or computation.claimed.value == other.claimed.value:
            return True
    return False


def _tokens(line: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    attached = True
    for match in _TEXT_TOKEN_RE.finditer(line):
        kind = match.lastgroup or "other"
        if kind == "space":
            attached = False
            continue
        tokens.append(_Tok(kind, match.group(), match.start(), match.end(), attached))
        attached = True
    return [_classify(tokens, index) for index in range(len(tokens))]


def _classify(tokens: list[_Tok], index: int) -> _Tok:
    """Decide whether a word is a multiplication sign, an unknown, or just a word."""
    token = tokens[index]
    if token.kind != "word":
        return token
    before = tokens[index - 1] if index > 0 else None
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    if token.text in ("x", "X") and before is not None and after is not None \
            and before.kind in ("num", "rp") and after.kind in ("num", "lp"):
        return _Tok("op", "*", token.start, token.end, token.attached)
    if len(token.text) == 1 and token.text not in _NOT_VARIABLES:
        glued_to_number = before is not None and before.kind in ("num", "rp") and token.attached
        next_is_math = after is not None and (after.kind in ("eq", "rp") or (
            after.kind == "op" and after.text not in ("x", "X")))
        previous_is_math = before is not None and before.kind in ("op", "eq", "lp")
        if glued_to_number or next_is_math or previous_is_math:
            return _Tok("var", token.text, token.start, token.end, token.attached)
    return token


def _runs(tokens: list[_Tok]) -> list[list[_Tok]]:
    """Maximal stretches of math tokens; unit words after a number are dropped."""
    runs: list[list[_Tok]] = []
    current: list[_Tok] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.kind in ("num", "op", "lp", "rp", "eq", "var"):
            if token.kind == "num" and current and current[-1].kind in ("num", "var", "rp") \
                    and not (current[-1].kind == "var"):
                runs.append(current)
                current = []
            current.append(token)
            index += 1
            continue
        if token.kind == "word" and current and current[-1].kind in ("num", "rp"):
            stop = index
            while stop < len(tokens) and stop - index < _MAX_UNIT_WORDS and tokens[stop].kind == "word":
                stop += 1
            if stop < len(tokens) and tokens[stop].kind in ("op", "eq", "rp") and stop > index:
                index = stop  # unit words between a number and an operator
                continue
        if current:
            runs.append(current)
        current = []
        index += 1
    if current:
        runs.append(current)
    return runs


def _split_parts(run: list[_Tok]) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for token in run:
        if token.kind == "eq":
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _parse_part(part: list[_Tok], limits: Limits) -> Node | None:
    """Parse the tokens of one side of an ``=``; ``None`` if not an expression."""
    while part and part[-1].kind == "op":
        part = part[:-1]
    while part and part[0].kind == "op" and part[0].text not in "-−":
        part = part[1:]
    if not part:
        return None
    text = _part_text(part)
    try:
        return parse_arithmetic(text, limits)
    except ExecutionError:
        return None


def _line_computations(line: str, offset: int, limits: Limits,
                       deadline: Deadline) -> list[Computation]:
    found: list[Computation] = []
    if not any(char.isdigit() for char in line):
        return found
    for run in _runs(_tokens(line)):
        parts = _split_parts(run)
        if len(parts) < 2:
            continue
        trees = [_parse_part(part, limits) for part in parts]
        found.extend(_computations_of_run(line, offset, parts, trees, limits, deadline))
    return found


def _computations_of_run(line: str, offset: int, parts: list[list[_Tok]],
                         trees: list[Node | None], limits: Limits,
                         deadline: Deadline) -> list[Computation]:
    found: list[Computation] = []
    unknowns = set().union(*(variables_in(tree) for tree in trees if tree is not None))
    if len(parts) == 2 and len(unknowns) == 1 and all(tree is not None for tree in trees):
        lhs, rhs = trees[0], trees[1]
        assert lhs is not None and rhs is not None
        bare = isinstance(lhs, Var) or isinstance(rhs, Var)
        if not bare and (isinstance(lhs, Apply) or isinstance(rhs, Apply)):
            start = offset + parts[0][0].start
            end = offset + parts[1][-1].end
            equation_text = f"{_part_text(parts[0])} = {_part_text(parts[1])}"
            return [Computation("equation", lhs, None, line[start - offset:end - offset],
                                start, end, "equation", rhs, equation_text)]
    for index, tree in enumerate(trees):
        if not isinstance(tree, Apply) or variables_in(tree):
            continue
        following = trees[index + 1] if index + 1 < len(trees) else None
        claimed = following if isinstance(following, Num) else None
        if claimed is None and index + 1 < len(trees):
            continue  # "3*4 = 6*2 = 12": the pair that ends in a number is kept
        start = offset + parts[index][0].start
        end = offset + (parts[index + 1][-1].end if claimed is not None else parts[index][-1].end)
        if claimed is not None and not _agrees(tree, claimed, limits, deadline):
            continue
        found.append(Computation("value", tree, claimed, line[start - offset:end - offset],
                                 start, end, "arithmetic"))
    return found


def _part_text(part: list[_Tok]) -> str:
    """Normalised text of tokens: spaces kept only where the CoT had them."""
    pieces: list[str] = []
    for index, token in enumerate(part):
        if index and not token.attached:
            pieces.append(" ")
        pieces.append(re.sub(r"\s+", "", token.text))
    return "".join(pieces)


def _agrees(tree: Node, claimed: Num, limits: Limits, deadline: Deadline) -> bool:
    """Whether the expression's value matches the written result (up to its rounding)."""
    try:
        value = evaluate_tree(tree, limits, deadline)
    except ExecutionError:
        return False
    if not isinstance(value, sympy.Rational):
        try:
            value = sympy.Rational(str(sympy.N(value, 30)))
        except (TypeError, ValueError):
            return False
    digits = claimed.text.replace("$", "").replace("%", "").strip()
    places = len(digits.split(".", 1)[1]) if "." in digits else 0
    tolerance = sympy.Rational(1, 10**places)
    targets = [claimed.value, claimed.literal]
    scale = sympy.Rational(1, 100) if claimed.percent else 1
    return any(abs(value - target) <= tolerance * (scale if target == claimed.value else 1)
               for target in targets)
