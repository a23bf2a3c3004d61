"""Gold answers: GSM8K ``#### N`` and MATH ``\\boxed{…}`` with nested braces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.execution.answers import extract_boxed, extract_gsm8k_answer, find_boxed, split_gsm8k_solution

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(("solution", "expected"), [
    ("48/2 = 24\n#### 72", "72"),
    ("...\n#### 1,200", "1200"),
    ("...\n#### 109,200,000", "109200000"),
    ("...\n#### -3", "-3"),
    ("...\n#### 2.5", "2.5"),
    ("...\n####  $18 ", "18"),
    ("no answer line", None),
])
def test_gsm8k_answer(solution: str, expected: str | None) -> None:
    assert extract_gsm8k_answer(solution) == expected


def test_split_gsm8k_solution_keeps_reasoning_only() -> None:
    reasoning, answer = split_gsm8k_solution("a = <<1+1=2>>2\nb\n#### 2")
    assert reasoning == "a = <<1+1=2>>2\nb"
    assert answer == "2"


@pytest.mark.parametrize(("text", "expected"), [
    ("so $\\boxed{5}$.", "5"),
    ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
    ("$\\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt{3}}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("$\\fbox{7}$", "7"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\boxed{\\text{(A)}}", "\\text{(A)}"),
    ("\\boxed 5 is it", "5"),
    ("\\boxed{unbalanced", None),
    ("no box", None),
    ("\\boxed{}", ""),
])
def test_boxed_with_nested_braces_last_wins(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_find_boxed_offsets() -> None:
    text = "a \\boxed{x^{2}} b"
    assert find_boxed(text) == [(2, 15, "x^{2}")]
    assert text[2:15] == "\\boxed{x^{2}}"


def test_boxed_found_in_every_math_fixture_solution() -> None:
    records = [json.loads(line) for line in (FIXTURES / "math_sample.jsonl").read_text().splitlines()]
    assert len(records) == 60
    assert all(extract_boxed(record["solution"]) is not None for record in records)
    nested = [extract_boxed(record["solution"]) for record in records]
    assert sum("{" in (answer or "") for answer in nested) >= 20
