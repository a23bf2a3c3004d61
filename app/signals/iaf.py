"""IAF — input attention fraction (design §2.2).

Two quantities, both on **token** indices of the teacher's tokenizer:

1. :func:`iaf_matrix` — for each CoT segment S and problem token j,
   ``IAF(j, S) = Σ_{t∈S} A[t, j] / Σ_{t∈S} Σ_{i∈problem} A[t, i]``: rows sum to 1 over the
   problem tokens (an all-zero row means the segment put no mass on the problem).
2. :func:`input_fraction_per_head` — per head and CoT token, the share of the head's
   attention mass on the input (problem) tokens: high = reading, low = computing.
   :func:`implicit_steps` finds sustained low stretches (implicit operations).

``rows`` are CoT attention rows ``(n_cot, T)`` whose columns are absolute positions;
``problem_token_range`` is the absolute half-open range of the problem-text tokens
(chat-template tokens excluded); segments and runs are CoT-relative token ranges.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.signals.arrays import check_range, to_numpy
from app.signals.config import IAFConfig

__all__ = [
    "iaf_matrix",
    "iaf_from_sums",
    "mass_from_sums",
    "problem_segment_sums",
    "segment_input_mass",
    "input_fraction",
    "input_fraction_per_head",
    "implicit_steps",
    "implicit_segment_mask",
    "segment_means",
    "high_iaf_tokens",
]

_PUNCT_ONLY = re.compile(r"^[\W_]*$", re.UNICODE)


def _segment_sums(values: np.ndarray, segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """Sum ``values`` (n, ...) over each half-open row range → float64 ``(n_segments, ...)``.

    Segments that tile ``[0, n)`` in order (what ``segments_from_boundaries`` returns) use one
    ``np.add.reduceat``; any other set of ranges uses prefix sums.  No per-token loop either way.
    """
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    n = values.shape[0]
    if seg.size and (seg.min() < 0 or seg.max() > n or np.any(seg[:, 0] > seg[:, 1])):
        raise ValueError(f"segments out of range for {n} tokens")
    tiles = (
        seg.shape[0] > 0
        and seg[0, 0] == 0
        and seg[-1, 1] == n
        and np.all(seg[:, 1] > seg[:, 0])
        and np.all(seg[1:, 0] == seg[:-1, 1])
    )
    if tiles:
        return np.add.reduceat(values.astype(np.float64), seg[:, 0], axis=0)
    prefix = np.concatenate([np.zeros((1, *values.shape[1:]), np.float64), np.cumsum(values, axis=0, dtype=np.float64)])
    return prefix[seg[:, 1]] - prefix[seg[:, 0]]


def problem_segment_sums(
    rows: Any, problem_token_range: tuple[int, int], segments: Sequence[tuple[int, int]]
) -> np.ndarray:
    """CoT rows ``(n_cot, T)`` → per segment, the attention summed over its tokens on each problem
    token ``(n_segments, n_problem)`` float64 (the numerator of IAF)."""
    a = to_numpy(rows)
    p0, p1 = check_range(problem_token_range, a.shape[1], "problem_token_range")
    return _segment_sums(a[:, p0:p1], segments)


def iaf_from_sums(sums: np.ndarray) -> np.ndarray:
    """Per-segment attention sums on the problem tokens ``(n_segments, n_problem)`` → IAF rows."""
    total = sums.sum(axis=1, keepdims=True)
    return np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)


def iaf_matrix(rows: Any, problem_token_range: tuple[int, int], segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """CoT rows ``(n_cot, T)`` + segments (CoT-relative token ranges) → IAF ``(n_segments, n_problem)``.

    Columns are problem tokens ``0 … n_problem-1`` (= absolute positions ``problem_token_range``).
    Each row sums to 1, or is all zeros when the segment put no mass on the problem.
    """
    return iaf_from_sums(problem_segment_sums(rows, problem_token_range, segments))


def segment_input_mass(
    rows: Any, problem_token_range: tuple[int, int], segments: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Mean attention mass per CoT token on the problem tokens, per segment ``(n_segments,)``
    (the denominator of IAF divided by the segment length; low = an ungrounded step)."""
    return mass_from_sums(problem_segment_sums(rows, problem_token_range, segments), segments)


def mass_from_sums(sums: np.ndarray, segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per-segment sums on the problem ``(n_segments, n_problem)`` → mean mass per token ``(n_segments,)``."""
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    lengths = (seg[:, 1] - seg[:, 0]).astype(np.float64)
    total = sums.sum(axis=1)
    return np.divide(total, lengths, out=np.zeros_like(total), where=lengths > 0)


def segment_means(values: Any, segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean of a per-token series ``(n_cot,)`` over each segment → ``(n_segments,)`` (0 for empty)."""
    v = to_numpy(values, np.float64)
    sums = _segment_sums(v, segments)
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    lengths = (seg[:, 1] - seg[:, 0]).astype(np.float64)
    return np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0)


def input_fraction(rows: Any, input_token_range: tuple[int, int]) -> np.ndarray:
    """Aggregated rows ``(n_q, T)`` → fraction of each row's mass on ``input_token_range`` ``(n_q,)``.

    Rows with no mass give 0.
    """
    a = to_numpy(rows)
    return input_fraction_per_head(a[None], input_token_range)[0]


def input_fraction_per_head(layer_attention: Any, input_token_range: tuple[int, int]) -> np.ndarray:
    """One layer's attention ``(H, n_q, T)`` → per-head input fraction ``(H, n_q)`` float32.

    ``input_fraction[h, t] = Σ_{i∈input} A[h, t, i] / Σ_i A[h, t, i]`` (0 where a row has no mass);
    ``input_token_range`` is an absolute half-open token range (the problem tokens).
    """
    att = to_numpy(layer_attention)
    if att.ndim != 3:
        raise ValueError(f"layer_attention must be (H, n_q, T), got shape {att.shape}")
    i0, i1 = check_range(input_token_range, att.shape[2], "input_token_range")
    on_input = att[:, :, i0:i1].sum(axis=2, dtype=np.float32)
    total = att.sum(axis=2, dtype=np.float32)
    return np.divide(on_input, total, out=np.zeros_like(on_input), where=total > 0)


def implicit_steps(fraction: Any, config: IAFConfig = IAFConfig()) -> list[tuple[int, int]]:
    """Input fraction ``(n_cot,)`` or per head ``(H, n_cot)`` (averaged over heads) → implicit runs.

    Returns CoT-relative half-open token ranges where the fraction stays below
    ``config.implicit_threshold`` for at least ``config.implicit_min_tokens`` tokens.
    """
    f = to_numpy(fraction, np.float64)
    if f.ndim == 2:
        f = f.mean(axis=0)
    if f.ndim != 1:
        raise ValueError(f"fraction must be (n_cot,) or (H, n_cot), got shape {f.shape}")
    low = np.concatenate(([False], f < config.implicit_threshold, [False]))
    edges = np.flatnonzero(np.diff(low.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    keep = ends - starts >= config.implicit_min_tokens
    return [(int(s), int(e)) for s, e in zip(starts[keep], ends[keep], strict=True)]


def implicit_segment_mask(
    segments: Sequence[tuple[int, int]], runs: Sequence[tuple[int, int]], n_tokens: int, min_coverage: float = 0.5
) -> np.ndarray:
    """Segments ``(n_segments,)`` bool: True when ≥ ``min_coverage`` of the segment's tokens lie in
    an implicit run (all CoT-relative token ranges over ``n_tokens`` CoT tokens)."""
    covered = np.zeros(n_tokens + 1, dtype=np.int64)
    r = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    np.add.at(covered, r[:, 0], 1)
    np.add.at(covered, r[:, 1], -1)
    in_run = (np.cumsum(covered)[:n_tokens] > 0).astype(np.float64)
    return segment_means(in_run, segments) >= min_coverage


def high_iaf_tokens(
    iaf_row: Any,
    problem_text: str,
    problem_token_char_spans: Any,
    config: IAFConfig = IAFConfig(),
) -> np.ndarray:
    """One segment's IAF over problem tokens ``(n_problem,)`` → selected problem-token indices.

    Selects at most ``high_iaf_top_k`` tokens with IAF ≥ ``high_iaf_min_ratio / n_problem``,
    highest first (ties by position), skipping punctuation/whitespace-only tokens when
    ``skip_punctuation`` (their text is ``problem_text[start:end]``, char spans relative to
    ``problem_text``).  Returns int64 indices sorted by position.
    """
    iaf = to_numpy(iaf_row, np.float64)
    spans = to_numpy(problem_token_char_spans, np.int64).reshape(-1, 2)
    if iaf.shape != (spans.shape[0],):
        raise ValueError(f"iaf_row {iaf.shape} does not match {spans.shape[0]} problem tokens")
    if iaf.size == 0:
        return np.zeros(0, dtype=np.int64)
    eligible = iaf >= config.high_iaf_min_ratio / iaf.size
    eligible &= iaf > 0
    if config.skip_punctuation:
        eligible &= np.array([not _PUNCT_ONLY.match(problem_text[s:e]) for s, e in spans], dtype=bool)
    idx = np.flatnonzero(eligible)
    top = idx[np.argsort(-iaf[idx], kind="stable")[: config.high_iaf_top_k]]
    return np.sort(top)
