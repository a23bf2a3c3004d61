"""CoT boundaries never overlap or cut units (issue 15, defects 2 and 3).

``word_start_tokens`` decides where a CoT segment may start. A byte-level BPE token holding the
second byte of a multi-byte char (×, ÷, →, °, €) shares its char span with the first byte's token
and must not start a segment (overlapping char spans); numbers, GSM8K calculator annotations and
LaTeX math must never be cut.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.signals.alignment import token_char_spans, word_start_tokens
from app.signals.jsd import segments_from_boundaries
from app.signals.units import unbreakable_spans
from tests.conftest import FIXTURES
from tests.helpers_tokenizers import default_bpe_tokenizer, train_bpe_tokenizer

SYMBOLS = "Step 1: 5 × 6 = 30 → 30 ÷ 2 = 15 °C, then €3 + €4 = €7 → done."


def _segment_char_spans(spans: np.ndarray, boundaries: np.ndarray) -> list[tuple[int, int]]:
    """Char hull of each segment (min start, max end of its tokens), as persistence computes it."""
    return [
        (int(spans[s:e, 0].min()), int(spans[s:e, 1].max()))
        for s, e in segments_from_boundaries(boundaries, len(spans))
    ]


def test_multibyte_characters_never_start_a_segment() -> None:
    tokenizer = train_bpe_tokenizer(["plain ascii text 0123456789 step then done"], vocab_size=300)
    spans = token_char_spans(tokenizer, SYMBOLS)
    shared = np.flatnonzero(spans[1:, 0] < spans[:-1, 1]) + 1  # tokens starting before the previous ends
    assert shared.size >= 5, "the tokenizer must split the multi-byte symbols into byte tokens"
    allowed = word_start_tokens(spans, SYMBOLS)
    assert not allowed[shared].any()
    # Every allowed token as a boundary: segments tile the text without overlap.
    hulls = _segment_char_spans(spans, np.flatnonzero(allowed))
    for (_, end), (start, _) in zip(hulls, hulls[1:]):
        assert end <= start, hulls
    assert "".join(SYMBOLS[s:e] for s, e in hulls) == SYMBOLS


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("She pays 0.25 dollars", "0.25"),
        ("It costs 9.00 now", "9.00"),
        ("A total of 1,000 pens", "1,000"),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips", "<<48/2=24>>24"),
        ("So $\\frac{1}{2} + x = 3$ holds", "$\\frac{1}{2} + x = 3$"),
        ("Then \\(x^2 + 1\\) is positive", "\\(x^2 + 1\\)"),
    ],
)
def test_units_are_unbreakable(text: str, unit: str) -> None:
    spans = token_char_spans(default_bpe_tokenizer(), text)
    start = text.index(unit)
    inside = (spans[:, 0] > start) & (spans[:, 0] < start + len(unit))
    assert inside.any(), "the unit spans several tokens"
    assert not word_start_tokens(spans, text)[inside].any()


def test_display_math_breaks_only_between_lines() -> None:
    text = "We get $$a = 1 + 2 \\\\ b = 3 \\cdot 4$$ and stop."
    units = {text[s:e] for s, e in unbreakable_spans(text)}
    assert {"$$a = 1 + 2 \\\\ ", "b = 3 \\cdot 4$$"} <= units


def _fixture_texts(name: str, field: str) -> list[str]:
    return [json.loads(line)[field] for line in (FIXTURES / name).read_text().splitlines()]


@pytest.mark.parametrize(("fixture", "field"), [("gsm8k_sample.jsonl", "answer"), ("math_sample.jsonl", "solution")])
def test_no_allowed_boundary_inside_a_unit_on_fixture_solutions(fixture: str, field: str) -> None:
    """Over every reference solution, no token allowed to start a segment starts inside a number,
    a calculator annotation or inline math, nor before the previous token's end."""
    texts = _fixture_texts(fixture, field)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=600)
    cut = 0
    for text in texts:
        spans = token_char_spans(tokenizer, text)
        allowed = word_start_tokens(spans, text)
        units = unbreakable_spans(text)
        starts = spans[allowed, 0]
        cut += int(((starts[:, None] > units[None, :, 0]) & (starts[:, None] < units[None, :, 1])).any(axis=1).sum())
        previous_end = np.maximum.accumulate(np.concatenate(([0], spans[:-1, 1])))
        cut += int((allowed & (spans[:, 0] < previous_end)).sum())
    assert cut == 0
