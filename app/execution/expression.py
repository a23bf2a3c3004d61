"""The expression tree shared by the text and LaTeX parsers and the program builder.

Leaves are numbers written in the text (:class:`Num`), named constants
(:class:`Const`: pi, E) and unknowns (:class:`Var`); inner nodes apply one
whitelisted operation (:class:`Apply`).  Nothing here evaluates anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import sympy

__all__ = ["Num", "Const", "Var", "Apply", "Node", "OP_ARITY", "CONSTANTS",
           "numbers_in", "variables_in", "depth_of", "count_nodes"]

# op -> (min args, max args or None for n-ary).  SUB and DIV fold left:
# SUB(a, b, c) = a - b - c, DIV(a, b, c) = a / b / c.  ROOT(x, n) = x**(1/n).
# TO_PERCENT(x) = 100*x (a fraction re-expressed in percent units, "0.24 -> 24%").
# SELECT(x) = x: the CoT states an earlier result again as its answer
# ("<<250=250>>", or "x = 20" after solving for x).
# EQUATION is special: see app.execution.executor.
OP_ARITY: dict[str, tuple[int, int | None]] = {
    "ADD": (2, None), "SUB": (2, None), "MUL": (2, None), "DIV": (2, None),
    "POW": (2, 2), "NEG": (1, 1), "SQRT": (1, 1), "ROOT": (2, 2),
    "FACTORIAL": (1, 1), "BINOMIAL": (2, 2), "ABS": (1, 1), "MOD": (2, 2),
    "FLOOR": (1, 1), "CEIL": (1, 1), "TO_PERCENT": (1, 1), "SELECT": (1, 1),
    "EQUATION": (1, None),
}
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "E": sympy.E}


@dataclass(frozen=True)
class Num:
    """A number literal as written; ``value`` is what it means in arithmetic.

    ``"5%"`` has ``value`` 1/20, ``literal`` 5 and ``percent`` True; ``"$3.50"``
    has value 7/2.
    """

    value: sympy.Rational
    text: str
    percent: bool = False

    @property
    def literal(self) -> sympy.Rational:
        """The number as written, before percent scaling ("5%" -> 5)."""
        return self.value * 100 if self.percent else self.value


@dataclass(frozen=True)
class Const:
    """A named mathematical constant (a key of :data:`CONSTANTS`)."""

    name: str


@dataclass(frozen=True)
class Var:
    """An unknown (only meaningful inside equations)."""

    name: str


@dataclass(frozen=True)
class Apply:
    """One whitelisted operation (a key of :data:`OP_ARITY`) applied to sub-trees."""

    op: str
    args: tuple["Node", ...]


Node = Union[Num, Const, Var, Apply]


def numbers_in(node: Node) -> list[Num]:
    """Number literals of a tree, left to right."""
    if isinstance(node, Num):
        return [node]
    if isinstance(node, Apply):
        return [num for arg in node.args for num in numbers_in(arg)]
    return []


def variables_in(node: Node) -> set[str]:
    """Names of the unknowns in a tree."""
    if isinstance(node, Var):
        return {node.name}
    if isinstance(node, Apply):
        return set().union(*(variables_in(arg) for arg in node.args)) if node.args else set()
    return set()


def depth_of(node: Node) -> int:
    """Height of the tree (a leaf has depth 1)."""
    if isinstance(node, Apply):
        return 1 + max((depth_of(arg) for arg in node.args), default=0)
    return 1


def count_nodes(node: Node) -> int:
    """Number of nodes in the tree."""
    if isinstance(node, Apply):
        return 1 + sum(count_nodes(arg) for arg in node.args)
    return 1
