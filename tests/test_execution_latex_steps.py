"""LaTeX CoT parsing through latex2sympy2_extended, with guards."""

from __future__ import annotations

import time

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from app.execution.errors import ExecutionError, ForbiddenInput, InputTooLong, UnsupportedOperation
from app.execution.expression import Apply, Const, Num
from app.execution.latex_steps import find_latex_computations, latex_to_tree, math_segments
from app.execution.operations import evaluate_tree


def _steps(text: str) -> list[tuple[str, object]]:
    return [(c.text, evaluate_tree(c.tree)) for c in find_latex_computations(text)]


def test_numeric_latex_equalities_become_computations() -> None:
    text = (r"We get $\binom{5}{2} = 10$ and $2^3 - 1 = 7$, so $\sqrt{12} = 2\sqrt{3}$. "
            r"Then $50\% \cdot 8 = 4$ and \[\frac{5 \cdot 4}{2} = 10.\] "
            r"Finally $3 \times 4 \div 2 = \boxed{6}$.")
    assert _steps(text) == [
        (r"\binom{5}{2} = 10", 10),
        (r"2^3 - 1 = 7", 7),
        (r"\sqrt{12} = 2\sqrt{3}", 2 * sympy.sqrt(3)),
        (r"50\% \cdot 8 = 4", 4),
        (r"\frac{5 \cdot 4}{2} = 10.", 10),
        (r"3 \times 4 \div 2 = \boxed{6}", 6),
    ]


def test_symbolic_and_wrong_equalities_are_not_steps() -> None:
    assert _steps(r"$x^2 + 1 = 10$ and $2 + 2 = 5$ and $\sin(30) = 0.5$") == []


def test_align_environment_lines() -> None:
    text = "\\begin{align*}\n3 \\cdot 4 &= 12 \\\\\n12 + 1 &= 13\n\\end{align*}"
    assert [value for _, value in _steps(text)] == [12, 13]
    assert len(math_segments(text)) == 2


def test_tree_conversion_whitelist() -> None:
    assert latex_to_tree(sympy.Integer(3)) == Num(sympy.Integer(3), "3")
    assert latex_to_tree(sympy.pi) == Const("pi")
    tree = latex_to_tree(sympy.Pow(sympy.Integer(12), sympy.Rational(1, 2), evaluate=False))
    assert tree == Apply("SQRT", (Num(sympy.Integer(12), "12"),))
    with pytest.raises(UnsupportedOperation):
        latex_to_tree(sympy.Symbol("x"))
    with pytest.raises(UnsupportedOperation):
        latex_to_tree(sympy.sin(sympy.Integer(1), evaluate=False))


def test_hostile_latex() -> None:
    started = time.perf_counter()
    with pytest.raises(ForbiddenInput):
        find_latex_computations(r"$\def\x{1+1}\x = 2$")
    with pytest.raises(InputTooLong):
        find_latex_computations("$1+1=2$" * 100_000)
    assert find_latex_computations(r"$10^{10^{10}} + 1 = 5$") == []
    assert find_latex_computations("$" + "{" * 5_000 + "1" + "}" * 5_000 + " = 1$") == []
    assert find_latex_computations(r"$\binom{100000}{50000} = 1$") == []
    assert time.perf_counter() - started < 5.0


def test_table_layout_command_is_not_a_macro_definition() -> None:
    text = "\\[\\renewcommand{\\arraystretch}{1.5}\\begin{array}{c} 1 \\end{array}\\] and $2+2=4$"
    assert [value for _, value in _steps(text)] == [4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([
    "1", "2", "12", "0.5", "+", "-", "\\cdot ", "\\times ", "\\div ", "^", "^{", "}", "{", "(", ")",
    "\\frac{", "\\sqrt{", "\\binom{", "!", "=", "\\pi", "x", "\\%", "\\left(", "\\right)", " ",
]), max_size=25))
def test_fuzz_latex_steps_never_crash(pieces: list[str]) -> None:
    text = "$" + "".join(pieces) + "$"
    try:
        found = find_latex_computations(text)
    except ExecutionError:
        return
    for computation in found:
        assert 0 <= computation.start <= computation.end <= len(text)
        evaluate_tree(computation.tree)
