"""Find the computations of a plain-text CoT (GSM8K style).

Three sources, merged in CoT order:

* ``annotation`` — calculator annotations ``<<48/2=24>>`` (the left side is the
  expression, the right side the written result; a value-only annotation such
  as ``<<250=250>>`` restates an earlier result);
* ``arithmetic`` — plain arithmetic written without annotations, e.g.
  ``40 / 10 = 4 days``, ``$50 − $6 = $44``, ``0.2 x 50 = $10``,
  ``50 snowballs / 200 snowballs * 100% = 25%``, ``$600/weekday * 5 = $3000``,
  ``7 minus 6 equals 1``, ``158 * 1 1/2 = 237``, ``1 000 000 + 500 000 = …``:
  unit words between a number and an operator and rate units after a slash
  are skipped; ``×``/``÷``/``−``/``√`` and ``plus``/``minus``/``times``/
  ``divided by``/``equals`` are operators; ``C = 3*24+6`` assigns an unknown;
* ``equation`` — one-unknown equations such as ``9s = 117`` or
  ``x+(2x-8)=40``, solved by the executor, and ``x = 20`` restating a solved
  unknown.  A letter that cancels out (``4.8 L / 1.2 L = 4``) is a unit.

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
    r"(?P<num>(?:\d+ (?:and )?)?\d{1,2}/\d+(?![\d.,/%])"
    r"|(?:\$\s*)?(?:\d{1,3}(?: \d{3})+(?!\d)|(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
    r"|\.\d+)(?:\s?%)?)"
    r"|(?P<op>\*\*|//|[-+*/^×÷−–·⋅√])"
    r"|(?P<lp>[(\[])|(?P<rp>[)\]])"
    r"|(?P<eq>=)"
    r"|(?P<word>[A-Za-z]+(?:'[A-Za-z]+)?)"
    r"|(?P<space>[ \t]+)"
    r"|(?P<other>.)"
)
_NOT_VARIABLES = frozenset({"a", "A", "I"})
_GLUED_LETTER_RE = re.compile(r"(?<![\w.])\d+([A-Za-z])(?![\w])")  # "3A", "9s": an unknown
_MAX_UNIT_WORDS = 6
_CLAUSE_WORDS = frozenset({
    "because", "so", "then", "which", "since", "if", "is", "are", "was", "were", "will",
    "would", "that", "thus", "therefore", "we", "he", "she", "they", "it", "you",
})
_WORD_OPERATORS: dict[str, str] = {
    "plus": "+", "minus": "-", "times": "*", "equals": "=", "equal": "=",
}
_WORD_OPERATOR_PAIRS: dict[tuple[str, str], str] = {
    ("divided", "by"): "/", ("divided", "into"): "/", ("multiplied", "by"): "*",
}


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
    glued = set(_GLUED_LETTER_RE.findall(masked))
    offset = 0
    for line in masked.split("\n"):
        deadline.check("plain arithmetic")
        for computation in _line_computations(line, offset, limits, deadline, glued):
            twins = [other for other in found if _is_twin(computation, other)]
            if not twins:
                found.append(computation)
            elif all(not isinstance(twin.tree, Apply) for twin in twins) \
                    and isinstance(computation.tree, Apply):
                found = [other for other in found if other not in twins] + [computation]
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
    if variables_in(tree) or not isinstance(tree, (Apply, Num)):
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


def _is_twin(computation: Computation, annotation: Computation) -> bool:
    """Whether a plain computation repeats the annotation it touches (``48/2 = <<48/2=24>>24``)."""
    if annotation.source != "annotation":
        return False
    if annotation.start > computation.end + 2 or annotation.end < computation.start:
        return False
    if computation.claimed is None or annotation.claimed is None:
        return True
    written = {computation.claimed.value, computation.claimed.literal}
    return bool(written & {annotation.claimed.value, annotation.claimed.literal})


def _tokens(line: str, glued: set[str] | None = None) -> list[_Tok]:
    tokens: list[_Tok] = []
    attached = True
    for match in _TEXT_TOKEN_RE.finditer(line):
        kind = match.lastgroup or "other"
        if kind == "space":
            attached = False
            continue
        token = _Tok(kind, match.group(), match.start(), match.end(), attached)
        if kind == "num" and "/" in token.text and not _proper_fraction(token.text):
            tokens.extend(_split_division(token))
        else:
            tokens.append(token)
        attached = True
    tokens = _merge_word_operators(tokens)
    glued = set(glued or ()) | {token.text for index, token in enumerate(tokens)
                                if token.kind == "word" and len(token.text) == 1 and token.attached
                                and index > 0 and tokens[index - 1].kind == "num"}
    return [_classify(tokens, index, glued) for index in range(len(tokens))]


def _proper_fraction(text: str) -> bool:
    numerator, denominator = text.rsplit(" ", 1)[-1].split("/")
    return 0 < int(numerator) < int(denominator)


def _split_division(token: _Tok) -> list[_Tok]:
    """``48/2`` (not a proper fraction) is a division: three tokens."""
    pieces: list[_Tok] = []
    for match in re.finditer(r"\d+|/|and", token.text):
        start = token.start + match.start()
        kind = "num" if match.group()[0].isdigit() else ("op" if match.group() == "/" else "word")
        attached = token.attached if not pieces else token.text[match.start() - 1] != " "
        pieces.append(_Tok(kind, match.group(), start, start + len(match.group()), attached))
    return pieces


def _merge_word_operators(tokens: list[_Tok]) -> list[_Tok]:
    """``plus``/``minus``/``times``/``equals``/``divided by`` between numbers become symbols."""
    merged: list[_Tok] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        back = len(merged) - 1
        while back >= 0 and len(merged) - back <= 3 and merged[back].kind == "word":
            back -= 1  # "14 boys plus 11 girls": unit words may sit between
        previous_is_operand = back >= 0 and merged[back].kind in ("num", "rp")
        if token.kind == "word" and previous_is_operand and following is not None:
            pair = (token.text.lower(), following.text.lower())
            if pair in _WORD_OPERATOR_PAIRS:
                symbol = _WORD_OPERATOR_PAIRS[pair]
                merged.append(_Tok("op", symbol, token.start, following.end, False))
                index += 2
                continue
            symbol = _WORD_OPERATORS.get(token.text.lower())
            if symbol is not None and following.kind in ("num", "lp"):
                merged.append(_Tok("eq" if symbol == "=" else "op", symbol,
                                   token.start, token.end, False))
                index += 1
                continue
        merged.append(token)
        index += 1
    return merged


def _classify(tokens: list[_Tok], index: int, glued: set[str]) -> _Tok:
    """Decide whether a word is a multiplication sign, an unknown, or just a word.

    ``glued`` holds letters written glued to a number in the CoT (``3A``):
    elsewhere they are unknowns too (``A + 3A``, ``we get a = 26``).
    """
    token = tokens[index]
    if token.kind != "word":
        return token
    before = tokens[index - 1] if index > 0 else None
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    if token.text in ("x", "X") and after is not None and after.kind in ("num", "lp"):
        operand = index - 1
        while operand >= 0 and index - operand <= _MAX_UNIT_WORDS and tokens[operand].kind == "word":
            operand -= 1  # "4 pink x 2": unit words may sit between
        if operand >= 0 and tokens[operand].kind in ("num", "rp"):
            return _Tok("op", "*", token.start, token.end, token.attached)
    if len(token.text) == 1:
        glued_to_number = before is not None and before.kind in ("num", "rp") and token.attached
        next_is_math = after is None or after.kind in ("eq", "rp") or (
            after.kind == "op" and after.text not in ("x", "X"))
        previous_is_math = before is not None and before.kind in ("op", "eq", "lp")
        if token.text in _NOT_VARIABLES:
            is_variable = glued_to_number or (previous_is_math and next_is_math) or (
                token.text in glued and (previous_is_math or (after is not None and next_is_math)))
        else:
            is_variable = glued_to_number or (after is not None and next_is_math) or previous_is_math
        if is_variable:
            return _Tok("var", token.text, token.start, token.end, token.attached)
    return token


def _runs(tokens: list[_Tok]) -> list[list[_Tok]]:
    """Maximal stretches of math tokens.

    Unit words between a number and the next operator are dropped
    (``50 snowballs / 200 snowballs``), and so are rate units after a slash
    (``$600/weekday * 5``, ``3 degrees/5%``).  Two numbers in a row end a run.
    """
    runs: list[list[_Tok]] = []
    current: list[_Tok] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        after_operand = bool(current) and current[-1].kind in ("num", "rp")
        after_value = bool(current) and current[-1].kind in ("num", "rp", "var")
        if token.kind == "op" and token.text == "/" and after_value:
            stop = _skip_rate_unit(tokens, index)
            if stop is not None:
                index = stop
                continue
        if token.kind in ("num", "op", "lp", "rp", "eq", "var"):
            if token.kind == "num" and after_operand:
                runs.append(current)
                current = []
            current.append(token)
            index += 1
            continue
        if token.kind == "word" and after_value:
            stop = _skip_unit_words(tokens, index)
            if stop is not None:
                index = stop
                continue
        if current:
            runs.append(current)
        current = []
        index += 1
    if current:
        runs.append(current)
    return runs


def _skip_rate_unit(tokens: list[_Tok], slash: int) -> int | None:
    """Index after ``/unit`` when the slash introduces a unit (``/hour``), else ``None``."""
    if slash + 1 >= len(tokens) or tokens[slash + 1].kind != "word" or not tokens[slash + 1].attached:
        return None
    stop = slash + 1
    while stop < len(tokens) and stop - slash <= 2 and tokens[stop].kind == "word":
        stop += 1
    if stop >= len(tokens) or tokens[stop].kind in ("op", "eq", "rp", "other"):
        return stop if stop >= len(tokens) or tokens[stop].text != "√" else None
    return None


def _skip_unit_words(tokens: list[_Tok], first: int) -> int | None:
    """Index after unit words that sit between a number and an operator, else ``None``."""
    stop = first
    while stop < len(tokens) and stop - first < _MAX_UNIT_WORDS and tokens[stop].kind == "word":
        if tokens[stop].text.lower() in _CLAUSE_WORDS:
            return None
        stop += 1
    if stop < len(tokens) and stop > first and (
            tokens[stop].kind in ("eq", "rp") or (tokens[stop].kind == "op" and tokens[stop].text != "√")):
        return stop
    return None


def _split_parts(run: list[_Tok]) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for token in run:
        if token.kind == "eq":
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _trim(part: list[_Tok]) -> list[_Tok]:
    """Drop dangling operators at either end of one side of an ``=``."""
    while part and part[-1].kind == "op":
        part = part[:-1]
    while part and part[0].kind == "op" and part[0].text not in ("-", "−", "√"):
        part = part[1:]
    opened = sum(token.kind == "lp" for token in part) - sum(token.kind == "rp" for token in part)
    while opened > 0 and part and part[0].kind == "lp":  # "(2/3*6=4 miles)"
        part, opened = part[1:], opened - 1
    while opened < 0 and part and part[-1].kind == "rp":
        part, opened = part[:-1], opened + 1
    return part


def _parse_part(part: list[_Tok], limits: Limits) -> Node | None:
    """Parse the tokens of one side of an ``=``; ``None`` if not an expression."""
    if not part:
        return None
    text = _part_text(part)
    try:
        return parse_arithmetic(text, limits)
    except ExecutionError:
        return None


def _line_computations(line: str, offset: int, limits: Limits, deadline: Deadline,
                       glued: set[str] | None = None) -> list[Computation]:
    found: list[Computation] = []
    if not any(char.isdigit() for char in line):
        return found
    for run in _runs(_tokens(line, glued)):
        parts = [_trim(part) for part in _split_parts(run)]
        if len(parts) < 2 or any(not part for part in parts[1:-1]):
            continue
        trees = [_parse_part(part, limits) for part in parts]
        found.extend(_computations_of_run(line, offset, parts, trees, limits, deadline))
    return found


def _computations_of_run(line: str, offset: int, parts: list[list[_Tok]],
                         trees: list[Node | None], limits: Limits,
                         deadline: Deadline) -> list[Computation]:
    found: list[Computation] = []
    unknowns = set().union(*(variables_in(tree) for tree in trees if tree is not None))
    if len(parts) == 2 and len(unknowns) == 1 and all(tree is not None for tree in trees) \
            and all(parts):
        lhs, rhs = trees[0], trees[1]
        assert lhs is not None and rhs is not None
        bare = isinstance(lhs, Var) or isinstance(rhs, Var)
        if isinstance(lhs, Var) and isinstance(rhs, Num):  # "x = 20": states a solved unknown
            start, end = offset + parts[0][0].start, offset + parts[1][-1].end
            return [Computation("value", lhs, rhs, line[start - offset:end - offset],
                                start, end, "equation")]
        start, end = offset + parts[0][0].start, offset + parts[1][-1].end
        source_text = line[start - offset:end - offset]
        if bare and (isinstance(lhs, Apply) or isinstance(rhs, Apply)):  # "C = 3*24+6"
            name, value = (lhs.name, rhs) if isinstance(lhs, Var) else (rhs.name, lhs)  # type: ignore[union-attr]
            if isinstance(value, Apply) and not variables_in(value):
                return [Computation("value", value, None, source_text, start, end, "arithmetic",
                                    assigns=name)]
        if not bare and (isinstance(lhs, Apply) or isinstance(rhs, Apply)):
            as_units = _letters_as_units(parts, limits, deadline)
            if as_units is not None:  # "900g - 400g = 500g": the letter is a unit
                tree, claimed = as_units
                return [Computation("value", tree, claimed, source_text, start, end, "arithmetic")]
            equation_text = f"{_part_text(parts[0])} = {_part_text(parts[1])}"
            return [Computation("equation", lhs, None, source_text,
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


def _letters_as_units(parts: list[list[_Tok]], limits: Limits,
                      deadline: Deadline) -> tuple[Node, Num] | None:
    """``4.8 L / 1.2 L = 4``: without its letters, a computation that agrees with its result."""
    plain = [[token for token in part if token.kind != "var"] for part in parts]
    if any(not part for part in plain):
        return None
    tree, claimed = _parse_part(plain[0], limits), _parse_part(plain[1], limits)
    if isinstance(tree, Apply) and isinstance(claimed, Num) and _agrees(tree, claimed, limits, deadline):
        return tree, claimed
    return None


def _part_text(part: list[_Tok]) -> str:
    """Normalised text of tokens: spaces kept only where the CoT had them."""
    pieces: list[str] = []
    for index, token in enumerate(part):
        if index and not token.attached:
            pieces.append(" ")
        pieces.append(_canonical_number(token.text) if token.kind == "num" else token.text)
    return "".join(pieces)


def _canonical_number(text: str) -> str:
    """Number token text the arithmetic parser accepts: ``$ 5`` -> ``$5``, ``5 and 2/3`` -> ``5 2/3``."""
    text = re.sub(r"\s+and\s+", " ", text)
    text = re.sub(r"\$\s+", "$", text)
    text = re.sub(r"\s+%", "%", text)
    if re.fullmatch(r"\$?\d{1,3}(?: \d{3})+(?:\.\d+)?%?", text):  # "1 500 000"
        text = text.replace(" ", "")
    return text


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
    tolerance = sympy.Rational(1, 10**places) if places else sympy.Rational(1, 2)
    targets = [claimed.value, claimed.literal]
    scale = sympy.Rational(1, 100) if claimed.percent else 1
    return any(abs(value - target) <= tolerance * (scale if target == claimed.value else 1)
               for target in targets)
