"""Plain-text CoT parsing: annotations, unannotated arithmetic, equations, dedupe."""

from __future__ import annotations

import time

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from app.execution.computation import Computation
from app.execution.errors import ExecutionError, InputTooLong
from app.execution.operations import evaluate_tree
from app.execution.text_steps import find_annotations, find_computations


def _summary(cot: str) -> list[tuple[str, str, object]]:
    """(source, text, value) of every computation."""
    found: list[tuple[str, str, object]] = []
    for computation in find_computations(cot):
        value = evaluate_tree(computation.tree) if computation.kind == "value" else "eq"
        found.append((computation.source, computation.text, value))
    return found


@pytest.mark.parametrize(("line", "text", "value"), [
    ("So it takes 40 / 10 = 4 days.", "40 / 10 = 4", 4),
    ("Kate has $50 − $6 = $44 left.", "$50 − $6 = $44", 44),
    ("she earned 0.2 x 50 = $10.", "0.2 x 50 = $10", 10),
    ("That is 15 trucks / 90 vehicles * 100% = 16.66...%", None, None),
    ("50 snowballs / 200 snowballs * 100% = 25%", "50 snowballs / 200 snowballs * 100% = 25%",
     sympy.Rational(1, 4)),
    ("He pays $600/weekday * 5 weekdays = $3000", "$600/weekday * 5 weekdays = $3000", 3000),
    ("the average is (12+36+72)/3=40 whiskers", "(12+36+72)/3=40", 40),
    ("Billy needs 7 minus 6 equals 1 more mile.", "7 minus 6 equals 1", 1),
    ("A square side is √(144) = 12 feet", "√(144) = 12", 12),
    ("it needs 158 * 1 1/2 = 237 fish", "158 * 1 1/2 = 237", 237),
    ("so 8 * 5% = 40%", "8 * 5% = 40%", sympy.Rational(2, 5)),
])
def test_unannotated_arithmetic(line: str, text: str | None, value: object) -> None:
    found = _summary(line)
    if text is None:
        assert found == []
    else:
        assert found == [("arithmetic", text, value)]


def test_written_result_must_agree_with_the_expression() -> None:
    assert _summary("so it cost 192*100=$1920") == []  # a misparse or a CoT slip: not a step
    assert _summary("about 10/3 = 3.33 each") == [("arithmetic", "10/3 = 3.33", sympy.Rational(10, 3))]


def test_annotation_and_its_visible_twin_count_once() -> None:
    cot = "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    assert _summary(cot) == [("annotation", "48/2=24", 24)]
    assert find_annotations(cot) == [(20, 31, "48/2=24")]


def test_annotation_differing_from_visible_text_still_counts_once() -> None:
    assert _summary("Puffy has 3*12=<<12*3=36>>36 whiskers.") == [("annotation", "12*3=36", 36)]


def test_equations_and_selections() -> None:
    found = find_computations("Let s be the price.\n9s = 117\ns = 13")
    assert [(c.kind, c.source, c.equation_text) for c in found] == [
        ("equation", "equation", "9s = 117"), ("value", "equation", None)]
    assert [c.kind for c in find_computations("x+(2x-8)=40")] == ["equation"]
    assert find_computations("1 dozen = 12 eggs") == []  # no operation
    assert find_computations("Cape May has 2x-8 shark sightings") == []  # no "="


def test_word_multiplication_with_units_between() -> None:
    assert _summary("there are 4 pink x 2 = 8 blue curlers") == [
        ("arithmetic", "4 pink x 2 = 8", 8)]


def test_offsets_point_into_the_cot() -> None:
    cot = "First line.\nSo 2 + 3 = 5 apples."
    (computation,) = find_computations(cot)
    assert isinstance(computation, Computation)
    assert cot[computation.start:computation.end] == "2 + 3 = 5"


def test_huge_cot_is_refused_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(InputTooLong):
        find_computations("1+1=2 " * 200_000)
    assert time.perf_counter() - started < 1.0


def test_pathological_lines_are_bounded() -> None:
    started = time.perf_counter()
    find_computations("(" * 10_000 + "1" + ")" * 10_000 + " = 1")
    find_computations("<<" + "9" * 400 + "**9**9**9=1>>")
    find_computations("10**10**10 = 5\n" + "2^2^2^2^2^2^2 = 4")
    assert time.perf_counter() - started < 5.0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 +-*/=x$%.,<>()abs\n")), max_size=120))
def test_fuzz_cot_parsing_never_crashes(cot: str) -> None:
    try:
        found = find_computations(cot)
    except ExecutionError:
        return
    for computation in found:
        assert 0 <= computation.start <= computation.end <= len(cot)


@pytest.mark.parametrize(("line", "text", "value"), [
    ("1 000 000 + 500 000 = 1 500 000 cars", "1 000 000 + 500 000 = 1 500 000", 1_500_000),
    ("so 17 000/5 = 3 400 people", "17 000/5 = 3 400", 3400),
    ("14 boys plus 11 girls equals 25 total", "14 boys plus 11 girls equals 25", 25),
    ("56 boys divided into 4 classrooms equals 14 boys", "56 boys divided into 4 classrooms equals 14", 14),
    ("a speed of (2/3*6=4 miles per hour)", "2/3*6=4", 4),
    ("4.8 L / 1.2 L/hour = 4 hours", "4.8 L / 1.2 L/hour = 4", 4),
])
def test_more_unannotated_forms(line: str, text: str, value: object) -> None:
    assert _summary(line) == [("arithmetic", text, value)]


def test_assignment_to_an_unknown_is_remembered() -> None:
    found = find_computations("3*24 +6=C\nC=<<78=78>>78")
    assert [(c.kind, c.assigns) for c in found] == [("value", "C"), ("value", None)]
