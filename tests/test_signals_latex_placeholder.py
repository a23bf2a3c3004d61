"""A LaTeX placeholder never fuses with the next word in clause expansion (issue 15, defect 7).

MATH problems often glue text to display math ("…\\right.\\]Find $a+b$ if …"). The same-length
placeholder that hides the formula from spaCy must stay a separate token; fused with "Find" it
made the whole problem one clause, i.e. one region for every CoT step.
"""

from __future__ import annotations

import json

import pytest

from app.signals.clauses import expand_to_clauses, latex_spans, mask_latex, parse_problem
from tests.conftest import FIXTURES

MATH = [json.loads(line)["problem"] for line in (FIXTURES / "math_sample.jsonl").read_text().splitlines()]
GLUED = MATH[0]  # "Let \\[f(x) = … \\right.\\]Find $a+b$ if the piecewise function is continuous (…)."


def test_placeholder_keeps_offsets_and_is_space_delimited() -> None:
    text = "Let \\[x^2\\]Find $y$'s value (and$z$)."
    masked = mask_latex(text, latex_spans(text))
    assert len(masked) == len(text)
    assert "Find" in masked.split() and "Let" in masked.split()
    math = {i for s, e in latex_spans(text) for i in range(s, e)}
    assert all(masked[i] == c for i, c in enumerate(text) if i not in math)  # only math chars change


@pytest.mark.parametrize("text", [t for t in MATH if latex_spans(t)][:20])
def test_no_spacy_token_straddles_a_formula(text: str) -> None:
    doc = parse_problem(text)
    for s, e in latex_spans(text):
        for tok in doc:
            t0, t1 = tok.idx, tok.idx + len(tok.text)
            inside = s <= t0 and t1 <= e
            outside = t1 <= s or t0 >= e
            assert inside or outside, (text[s:e], tok.text)


def test_a_word_after_display_math_gets_its_own_clause() -> None:
    assert "\\]Find" in GLUED
    seed = GLUED.index("continuous")
    regions = expand_to_clauses(GLUED, [(seed, seed + len("continuous"))])
    assert len(regions) == 1 and regions[0][0] > GLUED.index("\\]Find"), regions  # not the whole problem
    assert GLUED[regions[0][0] : regions[0][1]] == "if the piecewise function is continuous"
