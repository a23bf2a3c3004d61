"""Parse plain arithmetic (``48 / 2``, ``$5 x 3``, ``60% * 40%``, ``2(16)-8``) into a tree.

A small tokenizer plus a recursive-descent parser; nothing is evaluated and no
text ever reaches ``eval``/``sympify``.  Length and nesting depth are checked
*before* parsing, token count while tokenizing.

Grammar (``x``/``×``/``·`` multiply, ``÷`` divides, ``−``/``–`` subtract)::

    equation := expr "=" expr
    expr     := term (("+" | "-") term)*
    term     := unary (("*" | "/" | implicit) unary)*     implicit: 2(3), 3x, (a)(b)
    unary    := ("-" | "+") unary | power
    power    := atom (("^" | "**") unary)?                 right-associative
    atom     := number | "(" expr ")" | "sqrt" "(" expr ")" | letter
    number   := ["$"] digits [","ddd]* ["." digits] ["%"]  |  [w " "] a "/" b
                (``a/b`` written without spaces with integers 0 < a < b is one
                fraction literal, e.g. ``3/4``, ``2 1/2``; ``48/2`` stays a division)

``a // b`` is ``FLOOR(DIV(a, b))``; ``√`` is a prefix square root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import sympy

from app.execution.errors import InputTooLong, ParseError, TooComplex, TooDeep
from app.execution.expression import Apply, Node, Num, Var
from app.execution.limits import DEFAULT_LIMITS, Limits

__all__ = ["Token", "tokenize", "parse_arithmetic", "parse_equation", "check_nesting"]

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\$\s?)?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:\s?%)?)"
    r"|(?P<op>\*\*|//|[-+*/^×÷−–·⋅√])"
    r"|(?P<lp>[(\[])|(?P<rp>[)\]])"
    r"|(?P<eq>=)"
    r"|(?P<word>[A-Za-z]+)"
)
_FRACTION_RE = re.compile(r"(?:(\d+) )?(\d+)/(\d+)(?![\d.,/%])")
_OP_CANON: dict[str, str] = {
    "+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "·": "*", "⋅": "*",
    "/": "/", "÷": "/", "^": "^", "**": "^", "//": "//", "√": "√",
}
_FUNCTIONS: dict[str, str] = {"sqrt": "SQRT"}


@dataclass(frozen=True)
class Token:
    """One token; ``start``/``end`` are char offsets into the parsed text."""

    kind: str  # 'num' | 'op' | 'lp' | 'rp' | 'eq' | 'var' | 'func'
    text: str
    start: int
    end: int


def check_nesting(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse text longer or more deeply bracketed than ``limits`` allow (linear scan)."""
    if len(text) > limits.max_expression_chars:
        raise InputTooLong(f"{len(text)} chars > {limits.max_expression_chars}")
    check_bracket_depth(text, limits)


def check_bracket_depth(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse text whose ``([{`` nesting exceeds ``limits.max_depth`` (linear scan, no parsing)."""
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
            if depth > limits.max_depth:
                raise TooDeep(f"nesting > {limits.max_depth}")
        elif char in ")]}":
            depth -= 1


def tokenize(text: str, limits: Limits = DEFAULT_LIMITS) -> list[Token]:
    """Split ``text`` into tokens; ``x``/``X`` between two operands becomes ``*``."""
    check_nesting(text, limits)
    raw: list[Token] = []
    pos = 0
    while pos < len(text):
        fraction = _FRACTION_RE.match(text, pos)
        if fraction is not None and (pos == 0 or text[pos - 1] not in "/.0123456789") \
                and 0 < int(fraction.group(2)) < int(fraction.group(3)):
            raw.append(Token("num", fraction.group(), fraction.start(), fraction.end()))
            pos = fraction.end()
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ParseError(f"unexpected {text[pos]!r} at {pos}")
        kind = match.lastgroup or ""
        if kind != "ws":
            raw.append(Token(kind, match.group(), match.start(), match.end()))
            if len(raw) > limits.max_tokens:
                raise TooComplex(f"more than {limits.max_tokens} tokens")
        pos = match.end()
    return [_classify(raw, index) for index in range(len(raw))]


def _classify(raw: list[Token], index: int) -> Token:
    """Resolve words into multiplication signs, functions or unknowns."""
    token = raw[index]
    if token.kind == "op":
        return Token("op", _OP_CANON[token.text], token.start, token.end)
    if token.kind != "word":
        return token
    before = raw[index - 1] if index > 0 else None
    after = raw[index + 1] if index + 1 < len(raw) else None
    if (token.text in ("x", "X") and before is not None and after is not None
            and before.kind in ("num", "rp") and after.kind in ("num", "lp")):
        return Token("op", "*", token.start, token.end)
    if token.text.lower() in _FUNCTIONS and after is not None and after.kind == "lp":
        return Token("func", token.text.lower(), token.start, token.end)
    if len(token.text) == 1:
        return Token("var", token.text, token.start, token.end)
    raise ParseError(f"unexpected word {token.text!r}")


def parse_arithmetic(text: str, limits: Limits = DEFAULT_LIMITS) -> Node:
    """Parse one arithmetic expression (no ``=``) into a tree."""
    tokens = tokenize(text, limits)
    parser = _Parser(tokens, limits)
    node = parser.expression(0)
    parser.expect_end()
    return node


def parse_equation(text: str, limits: Limits = DEFAULT_LIMITS) -> tuple[Node, Node]:
    """Parse ``lhs = rhs`` (exactly one ``=``) into two trees."""
    tokens = tokenize(text, limits)
    equals = [i for i, token in enumerate(tokens) if token.kind == "eq"]
    if len(equals) != 1:
        raise ParseError(f"expected one '=', found {len(equals)}")
    split = equals[0]
    left = _Parser(tokens[:split], limits)
    lhs = left.expression(0)
    left.expect_end()
    right = _Parser(tokens[split + 1:], limits)
    rhs = right.expression(0)
    right.expect_end()
    return lhs, rhs


def parse_number_token(text: str) -> Num:
    """The :class:`Num` of one number token (``$1,000.50``, ``5%``, ``.5``)."""
    percent = text.endswith("%")
    digits = re.sub(r"[$,%\s]", "", text)
    mixed = re.fullmatch(r"(\d+) (\d+)/(\d+)", re.sub(r"[$,%]", "", text).strip())
    if mixed is not None:
        whole, numerator, denominator = (int(part) for part in mixed.groups())
        value = whole + Fraction(numerator, denominator)
    elif "/" in digits:
        numerator, denominator = digits.split("/", 1)
        value = Fraction(int(numerator), int(denominator))
    else:
        value = Fraction(digits)
    rational = sympy.Rational(value.numerator, value.denominator)
    return Num(rational / 100 if percent else rational, text, percent)


class _Parser:
    """Recursive descent over a token list; ``depth`` guards recursion."""

    def __init__(self, tokens: list[Token], limits: Limits) -> None:
        self.tokens = tokens
        self.pos = 0
        self.limits = limits

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ParseError("unexpected end of expression")
        self.pos += 1
        return token

    def expect_end(self) -> None:
        token = self.peek()
        if token is not None:
            raise ParseError(f"unexpected {token.text!r} at {token.start}")

    def guard(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise TooDeep(f"expression deeper than {self.limits.max_depth}")

    def expression(self, depth: int) -> Node:
        self.guard(depth)
        node = self.term(depth + 1)
        while (token := self.peek()) is not None and token.kind == "op" and token.text in ("+", "-"):
            self.take()
            right = self.term(depth + 1)
            node = _fold("ADD" if token.text == "+" else "SUB", node, right)
        return node

    def term(self, depth: int) -> Node:
        self.guard(depth)
        node = self.unary(depth + 1)
        while (token := self.peek()) is not None:
            if token.kind == "op" and token.text in ("*", "/"):
                self.take()
                right = self.unary(depth + 1)
                node = _fold("MUL" if token.text == "*" else "DIV", node, right)
            elif token.kind == "op" and token.text == "//":
                self.take()
                right = self.unary(depth + 1)
                node = Apply("FLOOR", (Apply("DIV", (node, right)),))
            elif token.kind in ("lp", "var", "func") or (
                    token.kind == "num" and isinstance(node, Var)):
                right = self.unary(depth + 1)
                node = _fold("MUL", node, right)
            else:
                break
        return node

    def unary(self, depth: int) -> Node:
        self.guard(depth)
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == "√":
            self.take()
            return Apply("SQRT", (self.unary(depth + 1),))
        if token is not None and token.kind == "op" and token.text in ("+", "-"):
            self.take()
            operand = self.unary(depth + 1)
            if token.text == "+":
                return operand
            if isinstance(operand, Num):
                return Num(-operand.value, "-" + operand.text, operand.percent)
            return Apply("NEG", (operand,))
        return self.power(depth + 1)

    def power(self, depth: int) -> Node:
        self.guard(depth)
        base = self.atom(depth + 1)
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == "^":
            self.take()
            exponent = self.unary(depth + 1)
            return Apply("POW", (base, exponent))
        return base

    def atom(self, depth: int) -> Node:
        self.guard(depth)
        token = self.take()
        if token.kind == "num":
            return parse_number_token(token.text)
        if token.kind == "var":
            return Var(token.text)
        if token.kind == "lp":
            node = self.expression(depth + 1)
            closing = self.take()
            if closing.kind != "rp":
                raise ParseError(f"expected ')' at {closing.start}")
            return node
        if token.kind == "func":
            self.take()  # the "(" checked by the tokenizer
            node = self.expression(depth + 1)
            closing = self.take()
            if closing.kind != "rp":
                raise ParseError(f"expected ')' at {closing.start}")
            return Apply(_FUNCTIONS[token.text], (node,))
        raise ParseError(f"unexpected {token.text!r} at {token.start}")


def _fold(op: str, left: Node, right: Node) -> Node:
    """Build ``op(left, right)``, flattening left-nested chains of the same op.

    ADD and MUL flatten on both sides (associative); SUB and DIV only on the
    left (``(a - b) - c`` -> SUB(a, b, c), but ``a - (b - c)`` stays nested).
    """
    args: list[Node] = []
    if isinstance(left, Apply) and left.op == op:
        args.extend(left.args)
    else:
        args.append(left)
    if op in ("ADD", "MUL") and isinstance(right, Apply) and right.op == op:
        args.extend(right.args)
    else:
        args.append(right)
    return Apply(op, tuple(args))
