"""End to end on synthetic attention with a known block structure: k CoT steps, each reading its
own clause of the problem → exact recovery of the k boundaries and of the k problem regions."""

from __future__ import annotations

import numpy as np
import pytest

from app.signals import (
    JSDConfig,
    SignalConfig,
    char_spans_to_token_spans,
    compute_trace_signals,
    locate_problem,
    problem_regions_per_segment,
    problem_tokens,
    render_spans,
)
from tests.helpers_tokenizers import default_bpe_tokenizer, minilm_tokenizer

# GSM8K test problem (MIT licensed, (c) 2021 OpenAI).
NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
CLAUSES = (
    "Natalia sold clips to 48 of her friends in April",
    "she sold half as many clips in May",
    "How many clips did Natalia sell altogether in April and May",
)
STEP_LENGTHS = (13, 21, 9)  # CoT tokens per step: boundaries at 13 and 34


def _layout(tokenizer) -> tuple[int, tuple[int, int], np.ndarray, list[tuple[int, int]]]:
    """Prompt length, absolute problem token range, problem-relative token char spans, clause token ranges."""
    prompt = (
        tokenizer.apply_chat_template(
            [{"role": "user", "content": NATALIA}], tokenize=False, add_generation_prompt=True
        )
        if getattr(tokenizer, "chat_template", None)
        else "Solve: " + NATALIA + "\n"
    )
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    located = problem_tokens(enc["offset_mapping"], locate_problem(prompt, NATALIA))
    clause_chars = [(NATALIA.index(c), NATALIA.index(c) + len(c)) for c in CLAUSES]
    clause_tokens = char_spans_to_token_spans(clause_chars, located.char_spans)
    return len(enc["input_ids"]), located.token_range, located.char_spans, [tuple(map(int, t)) for t in clause_tokens]


def _block_attention(
    prompt_len: int,
    problem_range: tuple[int, int],
    clause_tokens: list[tuple[int, int]],
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Rows (n_cot, T): step i puts 0.7 uniformly on clause i's problem tokens, 0.2 on the first
    prompt token (an attention sink) and, when ``rng`` is given, 0.1 on the previous 3 CoT tokens
    plus small Dirichlet noise everywhere it may look."""
    n_cot = sum(STEP_LENGTHS)
    width = prompt_len + n_cot
    rows = np.zeros((n_cot, width), dtype=np.float32)
    t = 0
    for step, length in enumerate(STEP_LENGTHS):
        c0, c1 = clause_tokens[step]
        for _ in range(length):
            pos = prompt_len + t
            rows[t, 0] = 0.2
            rows[t, problem_range[0] + c0 : problem_range[0] + c1] = 0.7 / (c1 - c0)
            if rng is None:
                rows[t, 0] += 0.1
            else:
                rows[t, max(prompt_len, pos - 2) : pos + 1] += 0.1 / len(range(max(prompt_len, pos - 2), pos + 1))
                rows[t, : pos + 1] += 0.002 * rng.dirichlet(np.ones(pos + 1)).astype(np.float32)
            t += 1
    return rows / rows.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("tokenizer_name", ["bpe", "minilm"])
def test_exact_recovery_of_boundaries_and_regions(tokenizer_name: str) -> None:
    tokenizer = default_bpe_tokenizer() if tokenizer_name == "bpe" else minilm_tokenizer()
    prompt_len, problem_range, char_spans, clause_tokens = _layout(tokenizer)
    rows = _block_attention(prompt_len, problem_range, clause_tokens, rng=None)
    n_cot = rows.shape[0]

    signals = compute_trace_signals(rows, problem_range, (prompt_len, prompt_len + n_cot), SignalConfig())

    assert signals.boundaries.tolist() == [13, 34]
    assert signals.segments == [(0, 13), (13, 34), (34, 43)]
    # Inside a step rows are identical: JSD exactly 0; across steps the problem blocks are disjoint.
    assert np.count_nonzero(signals.jsd_raw) == 2
    assert np.flatnonzero(signals.jsd_raw).tolist() == [12, 33]
    for step, (c0, c1) in enumerate(clause_tokens):
        expected = np.zeros(problem_range[1] - problem_range[0])
        expected[c0:c1] = 1.0 / (c1 - c0)
        np.testing.assert_allclose(signals.iaf[step], expected, atol=1e-6)

    regions = problem_regions_per_segment(NATALIA, char_spans, signals.iaf, SignalConfig())
    got = [[NATALIA[r.start_char : r.end_char] for r in step] for step in regions]
    assert got == [[c] for c in CLAUSES], render_spans(
        NATALIA, [(r.start_char, r.end_char) for s in regions for r in s]
    )
    assert all(r.source == "clause" and r.score == pytest.approx(1.0) for step in regions for r in step)


def test_recovery_with_local_attention_and_noise_needs_a_real_peak_finder() -> None:
    prompt_len, problem_range, _, clause_tokens = _layout(default_bpe_tokenizer())
    rows = _block_attention(prompt_len, problem_range, clause_tokens, rng=np.random.default_rng(7))
    cot = (prompt_len, prompt_len + rows.shape[0])

    peaks = compute_trace_signals(rows, problem_range, cot, SignalConfig(jsd=JSDConfig(peak_prominence=0.1)))
    assert peaks.boundaries.tolist() == [13, 34]
    assert peaks.jsd_raw.min() > 0  # the noise makes every transition differ a little

    # The original detector (every index above mean + 1·std) also marks the Savitzky–Golay
    # shoulders of each spike: over-segmentation, which is why runs can be merged.
    original = compute_trace_signals(rows, problem_range, cot, SignalConfig(jsd=JSDConfig(peak_mode="threshold")))
    assert {13, 34} <= set(original.boundaries.tolist())
    assert len(original.boundaries) > 2
    merged = compute_trace_signals(
        rows, problem_range, cot, SignalConfig(jsd=JSDConfig(peak_mode="threshold", threshold_merge_runs=True))
    )
    assert merged.boundaries.tolist() == [13, 34]


def test_input_context_gives_the_same_boundaries() -> None:
    prompt_len, problem_range, _, clause_tokens = _layout(default_bpe_tokenizer())
    rows = _block_attention(prompt_len, problem_range, clause_tokens, rng=np.random.default_rng(3))
    cot = (prompt_len, prompt_len + rows.shape[0])
    signals = compute_trace_signals(
        rows, problem_range, cot, SignalConfig(jsd=JSDConfig(context="input", peak_prominence=0.1))
    )
    assert signals.boundaries.tolist() == [13, 34]
    # Only problem columns, renormalised: disjoint uniform blocks are ln 2 apart (up to the noise).
    assert signals.jsd_raw[[12, 33]] == pytest.approx([np.log(2)] * 2, abs=0.02)
