"""Token ↔ char alignment on hard text with two tokenizers (WordPiece MiniLM, locally trained byte-level BPE)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.signals.alignment import (
    SPAN_CLOSE,
    SPAN_OPEN,
    char_spans_to_token_spans,
    locate_problem,
    problem_tokens,
    render_spans,
    render_token_spans,
    token_char_spans,
    token_spans_to_char_spans,
    trim_span,
)
from tests.helpers_tokenizers import default_bpe_tokenizer, minilm_tokenizer

HARD = (
    "Café owner Zoë sold 1,000 croissants at $3.50 each — a 50% markup on $\\frac{7}{2}$; "
    "then x² + 3x = 10 (東京, 😀) and -3 ≤ y ≤ ½."
)
NEEDLES = ("1,000", "$3.50", "50%", "$\\frac{7}{2}$", "Café", "Zoë", "東京", "😀", "x²", "-3", "½", "croissants")


@pytest.fixture(scope="module", params=["minilm", "bpe"])
def tokenizer(request: pytest.FixtureRequest):
    return minilm_tokenizer() if request.param == "minilm" else default_bpe_tokenizer()


def _strip_markers(rendered: str, n_spans: int) -> str:
    """The inline part of ``render_spans`` (everything before the n listing lines), markers removed."""
    inline = rendered.split("\n")[: -n_spans or None]
    return "\n".join(inline).replace(SPAN_OPEN, "").replace(SPAN_CLOSE, "")


def test_the_two_tokenizers_really_differ() -> None:
    wp, bpe = minilm_tokenizer(), default_bpe_tokenizer()
    assert wp.tokenize("Café") == ["cafe"]  # lower-cased, accents stripped: offsets must map back
    assert any(t.startswith("Ġ") for t in bpe.tokenize(" sold 1,000"))  # byte-level, space inside tokens
    bpe_off = token_char_spans(bpe, "sold 東京")
    assert [tuple(o) for o in bpe_off].count((5, 6)) == 3  # one CJK char = 3 byte tokens, same char span


def test_needles_round_trip_on_hard_text(tokenizer) -> None:
    offsets = token_char_spans(tokenizer, HARD)
    spans = np.array([(HARD.index(n), HARD.index(n) + len(n)) for n in NEEDLES])
    tok_spans = char_spans_to_token_spans(spans, offsets)
    assert (tok_spans[:, 0] >= 0).all()
    back = token_spans_to_char_spans(tok_spans, offsets, HARD)
    for (s, e), (bs, be), needle in zip(spans, back, NEEDLES, strict=True):
        # Token-aligned hull of the needle: contains it, and never cuts inside a word it touches.
        assert bs <= s and e <= be, needle
        assert needle in HARD[bs:be]
        assert bs == 0 or not (HARD[bs - 1].isalnum() and HARD[bs].isalnum()), (needle, HARD[bs:be])
        assert be == len(HARD) or not (HARD[be - 1].isalnum() and HARD[be].isalnum()), (needle, HARD[bs:be])
    rendered = render_spans(HARD, back, list(NEEDLES))
    assert _strip_markers(rendered, len(back)) == HARD
    for i, (bs, be) in enumerate(back):
        assert f"[{i}] {bs}:{be} {NEEDLES[i]} {HARD[bs:be]!r}" in rendered.splitlines()


def test_exact_needles(tokenizer) -> None:
    offsets = token_char_spans(tokenizer, HARD)
    for needle in ("1,000", "$3.50", "50%", "croissants", "½"):
        s = HARD.index(needle)
        back = token_spans_to_char_spans(char_spans_to_token_spans([(s, s + len(needle))], offsets), offsets, HARD)
        assert HARD[back[0, 0] : back[0, 1]] == needle


def test_token_to_char_to_token_is_identity_on_every_token(tokenizer) -> None:
    offsets = token_char_spans(tokenizer, HARD)
    singles = np.stack([np.arange(len(offsets)), np.arange(1, len(offsets) + 1)], axis=1)
    chars = token_spans_to_char_spans(singles, offsets)
    np.testing.assert_array_equal(chars, offsets)
    back = char_spans_to_token_spans(chars, offsets)
    overlaps = (offsets[:, None, 0] < offsets[None, :, 1]) & (offsets[:, None, 1] > offsets[None, :, 0])
    shared = overlaps.sum(axis=1) > 1  # byte pieces of one char share it
    assert shared.any() == (
        type(tokenizer.backend_tokenizer.model).__name__ == "BPE"
    )  # only byte-level BPE splits chars
    np.testing.assert_array_equal(back[~shared], singles[~shared])
    for k in np.flatnonzero(shared):  # the hull of every token sharing a char with token k
        assert back[k, 0] <= k < back[k, 1] and (back[k, 1] - back[k, 0]) == overlaps[k].sum()
    # Every token's text is exactly its offsets' substring (what render shows).
    rendered = render_token_spans(HARD, singles, offsets)
    assert _strip_markers(rendered, len(singles)) == HARD


def test_problem_tokens_exclude_the_chat_template() -> None:
    bpe = default_bpe_tokenizer()
    problem = "Weng earns $12 an hour for babysitting. How much did she earn?"
    prompt = bpe.apply_chat_template([{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True)
    enc = bpe(prompt, add_special_tokens=False, return_offsets_mapping=True)
    c0, c1 = locate_problem(prompt, problem)
    located = problem_tokens(enc["offset_mapping"], (c0, c1))
    t0, t1 = located.token_range
    ids = enc["input_ids"]
    assert bpe.convert_ids_to_tokens(ids[t0 - 1]) == "Ċ"  # the template's newline, not the problem
    assert bpe.convert_ids_to_tokens(ids[t1]) == "<|im_end|>"
    assert bpe.decode(ids[t0:t1]) == problem
    assert located.n_tokens == len(located.char_spans) == t1 - t0
    assert located.char_spans.min() >= 0 and located.char_spans.max() <= len(problem)
    pieces = [problem[s:e] for s, e in located.char_spans]
    assert "".join(pieces) == problem  # byte-level BPE tokens tile the text exactly

    wp = minilm_tokenizer()
    enc = wp("Question: " + problem, return_offsets_mapping=True)  # [CLS] … [SEP]: zero-length specials
    located = problem_tokens(enc["offset_mapping"], (10, 10 + len(problem)))
    assert wp.convert_ids_to_tokens(enc["input_ids"][located.token_range[0]]) == "wen"
    assert located.token_range[1] == len(enc["input_ids"]) - 1  # [SEP] excluded


def test_locate_problem_rejects_missing_or_ambiguous() -> None:
    with pytest.raises(ValueError):
        locate_problem("abc", "x")
    with pytest.raises(ValueError):
        locate_problem("x and x", "x")


def test_trim_and_render_details() -> None:
    assert trim_span("  ab c ", 0, 7) == (2, 6)
    assert trim_span("   ", 0, 3) == (0, 0)
    text = "abcdef"
    out = render_spans(text, [(0, 4), (1, 2), (4, 4)], ["outer", "inner", "empty"])
    assert out.splitlines()[0] == "⟦a⟦b⟧cd⟧ef"
    assert out.splitlines()[3] == "[2] 4:4 empty ''"
    with pytest.raises(ValueError):
        render_spans(text, [(3, 9)])
    assert (char_spans_to_token_spans([(2, 2)], [(0, 3)]) == -1).all()


# --- property tests -------------------------------------------------------------------------

ALPHABET = st.sampled_from(
    list("ab xyz 0123456789,.$%-/½²éüß東京😀\\{}^_\n") + ["frac", "Café", " 1,000", " $3.50", " 50%"]
)
texts = st.lists(ALPHABET, min_size=1, max_size=40).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, data=st.data())
def test_char_token_char_is_a_token_aligned_hull(tokenizer, text: str, data: st.DataObject) -> None:
    offsets = token_char_spans(tokenizer, text)
    nonempty = offsets[offsets[:, 1] > offsets[:, 0]]
    assume(len(nonempty) > 0)
    s = data.draw(st.integers(0, len(text) - 1))
    e = data.draw(st.integers(s + 1, len(text)))
    tok = char_spans_to_token_spans([(s, e)], offsets)
    covered = ((nonempty[:, 0] < e) & (nonempty[:, 1] > s)).any()
    if not covered:
        assert tok.tolist() == [[-1, -1]]
        return
    chars = token_spans_to_char_spans(tok, offsets)
    cs, ce = (int(v) for v in chars[0])
    # Token aligned: starts at a token start and ends at a token end.
    assert cs in set(nonempty[:, 0].tolist()) and ce in set(nonempty[:, 1].tolist())
    # Covers every char of [s, e) that some token covers.
    for lo, hi in nonempty:
        if lo < e and hi > s:
            assert cs <= lo and hi <= ce
    # Idempotent: a second round trip changes nothing.
    tok2 = char_spans_to_token_spans(chars, offsets)
    np.testing.assert_array_equal(token_spans_to_char_spans(tok2, offsets), chars)
    # The rendering shows exactly the source substring.
    rendered = render_spans(text, chars)
    assert rendered.splitlines()[-1] == f"[0] {cs}:{ce} {text[cs:ce]!r}"
    assert _strip_markers(rendered, 1) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, data=st.data())
def test_token_char_token_round_trip(tokenizer, text: str, data: st.DataObject) -> None:
    offsets = token_char_spans(tokenizer, text)
    n = len(offsets)
    assume(n > 0)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(i + 1, n))
    chars = token_spans_to_char_spans([(i, j)], offsets)
    back = char_spans_to_token_spans(chars, offsets)
    bi, bj = (int(v) for v in back[0])
    assert bi <= i and j <= bj
    # Identity unless a token outside [i, j) shares a character with the span.
    cs, ce = (int(v) for v in chars[0])
    outside = np.r_[0:i, j:n]
    if not ((offsets[outside, 0] < ce) & (offsets[outside, 1] > cs)).any():
        assert (bi, bj) == (i, j)
    trimmed = token_spans_to_char_spans([(i, j)], offsets, text)[0]
    assert text[trimmed[0] : trimmed[1]] == text[cs:ce].strip()


def test_render_survives_text_with_marker_like_content() -> None:
    text = "a [0] 1:2 'x' b"
    out = render_spans(text, [(0, 1)])
    assert re.fullmatch(r"\[0\] 0:1 'a'", out.splitlines()[1])


def test_word_start_tokens_and_boundary_snapping() -> None:
    from app.signals.alignment import word_start_tokens
    from app.signals.jsd import snap_boundaries

    text = "Betty needs 100 - 50 = 50 more."
    # Tokens: "Bett" "y" " needs" " 1" "00" " -" " 50" " =" " 50" " more" "."
    spans = np.array([(0, 4), (4, 5), (5, 11), (11, 13), (13, 15), (15, 17), (17, 20), (20, 22), (22, 25), (25, 30), (30, 31)])
    starts = word_start_tokens(spans, text)
    assert starts.tolist() == [True, False, True, True, False, True, True, True, True, True, True]
    # A boundary inside "Betty" (token 1) or inside "100" (token 4) moves back to the word's first token.
    assert snap_boundaries([1, 4, 6], starts).tolist() == [3, 6]
    assert snap_boundaries([], starts).tolist() == []
