"""JSD step boundaries (design §2.1): attention rows → JSD trace → smoothed trace → peaks → segments.

Index conventions (all **token** indices of the teacher's tokenizer):

* ``rows`` is ``(n_cot, T)``: row ``t`` is the attention of CoT token ``t`` over the whole
  sequence (prompt + CoT); column ``c`` is the absolute token position ``c``.
* ``cot_token_range = (cot_start, cot_end)`` are absolute positions, ``cot_end - cot_start == n_cot``;
  CoT token ``t`` sits at position ``cot_start + t``.
* The JSD trace has ``n_cot - 1`` values: ``trace[i] = JSD(a_i ‖ a_{i+1})``, the transition
  from CoT token ``i`` to ``i + 1``.  A peak at trace index ``i`` is a boundary at CoT
  token ``i + 1`` (the first token of a new segment).
* Boundaries and segments are **CoT-relative** token indices (0 = first CoT token);
  segments are half-open ``(start, end)`` and never empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.signal import find_peaks, savgol_filter

from app.signals.arrays import check_range, to_numpy
from app.signals.config import JSDConfig

__all__ = [
    "LN2",
    "aggregate_heads",
    "aggregate_attention",
    "jsd",
    "jsd_trace",
    "smooth_trace",
    "detect_peaks",
    "jsd_boundaries",
    "segments_from_boundaries",
    "snap_boundaries",
]

LN2: float = math.log(2.0)


def aggregate_heads(layer_attention: Any, config: JSDConfig = JSDConfig()) -> np.ndarray:
    """One layer's per-head attention ``(H, n_q, T)`` → aggregated rows ``(n_q, T)`` float32.

    ``config.heads`` selects heads (all when None); ``config.aggregation`` is ``mean``,
    ``max`` or ``selected`` (= mean over ``config.heads``).  Token axes are unchanged.
    """
    att = to_numpy(layer_attention)
    if att.ndim != 3:
        raise ValueError(f"layer_attention must be (H, n_q, T), got shape {att.shape}")
    if config.heads is not None:
        att = att[list(config.heads)]
    if config.aggregation == "max":
        return att.max(axis=0).astype(np.float32, copy=False)
    return att.mean(axis=0, dtype=np.float32)


def aggregate_attention(attention: Any, config: JSDConfig = JSDConfig()) -> np.ndarray:
    """All layers ``(L, H, n_q, T)`` (array or a sequence of ``(H, n_q, T)``) → rows ``(n_q, T)``.

    Selects ``config.layers`` (negative indices count from the end), aggregates heads per
    layer with :func:`aggregate_heads` and averages the selected layers.
    """
    n_layers = len(attention)
    picked = [attention[layer] for layer in config.layers if -n_layers <= layer < n_layers]
    if len(picked) != len(config.layers):
        raise ValueError(f"layers {config.layers} out of range for {n_layers} layers")
    per_layer = [aggregate_heads(layer, config) for layer in picked]
    return per_layer[0] if len(per_layer) == 1 else np.mean(per_layer, axis=0, dtype=np.float32)


def jsd(p: Any, q: Any, epsilon: float = 1e-10) -> np.ndarray:
    """Jensen–Shannon divergence in nats between distributions along the last axis (float64).

    ``p`` and ``q`` are non-negative arrays of equal shape (any leading batch axes); each
    vector gets ``epsilon`` added to every entry and is renormalised, so zeros and
    all-zero vectors are safe.  Result: shape ``p.shape[:-1]``, values in ``[0, ln 2]``,
    exactly 0 for identical inputs, symmetric in ``p`` and ``q``.
    """
    x = to_numpy(p, np.float64) + epsilon
    y = to_numpy(q, np.float64) + epsilon
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    x /= x.sum(axis=-1, keepdims=True)
    y /= y.sum(axis=-1, keepdims=True)
    m = 0.5 * (x + y)
    out = 0.5 * (np.sum(x * np.log(x / m), axis=-1) + np.sum(y * np.log(y / m), axis=-1))
    return np.clip(out, 0.0, LN2)


def jsd_trace(
    rows: Any,
    cot_token_range: tuple[int, int],
    problem_token_range: tuple[int, int],
    config: JSDConfig = JSDConfig(),
) -> np.ndarray:
    """CoT attention rows ``(n_cot, T)`` → JSD trace ``(n_cot - 1,)`` float64, nats.

    ``config.context == 'full'``: for the pair (t-1, t) both rows are cut to t's context
    (positions ``0 … cot_start + t``), so row t-1 is zero-padded by one column; entries
    beyond that context are ignored.  ``'input'``: only the problem columns
    ``problem_token_range`` (absolute positions), each row renormalised to sum 1.
    Elementwise math is float32 (agrees with the float64 :func:`jsd` to ~1e-7 nats);
    identical rows still give exactly 0.
    """
    a = to_numpy(rows)
    if a.ndim != 2:
        raise ValueError(f"rows must be (n_cot, T), got shape {a.shape}")
    n_cot, width = a.shape
    cot_start, cot_end = check_range(cot_token_range, width, "cot_token_range")
    if cot_end - cot_start != n_cot:
        raise ValueError(f"cot_token_range {cot_token_range} has {cot_end - cot_start} tokens, rows have {n_cot}")
    if n_cot < 2:
        return np.zeros(0, dtype=np.float64)
    if config.context == "input":
        p0, p1 = check_range(problem_token_range, width, "problem_token_range")
        sub = a[:, p0:p1].astype(np.float32)
        mass = sub.sum(axis=1, keepdims=True)
        dist = np.divide(sub, mass, out=np.zeros_like(sub), where=mass > 0)
        return _pair_jsd_blocks(dist, np.full(n_cot - 1, p1 - p0), config.epsilon)
    support = cot_start + np.arange(2, n_cot + 1)  # pair (t-1, t) uses positions < cot_start + t + 1
    return _pair_jsd_blocks(a if a.dtype == np.float32 else a.astype(np.float32), support, config.epsilon)


_BLOCK = 64  # pairs per block: keeps each block's temporaries in L2 and skips the causal triangle


def _pair_jsd_blocks(a: np.ndarray, support: np.ndarray, epsilon: float) -> np.ndarray:
    """JSD of consecutive float32 rows ``(a[i], a[i+1])`` over columns ``< support[i]`` (non-decreasing).

    Processed in blocks of ``_BLOCK`` pairs, each cut to its widest support, so the upper
    triangle of causal CoT attention is never touched (a chunked loop, not a per-token one);
    the block temporaries are contiguous and reused.  Entries past a pair's support count as
    zero; ε then goes to every column of the block, which differs from ε on the exact support
    by < block·ε / Z (≈1e-8 relative, below float32 resolution).  Uses
    ``½ Σ P·ln(P/M) + ½ Σ Q·ln(Q/M)``, M = (P+Q)/2, so P == Q gives exactly 0.
    """
    n_pairs = a.shape[0] - 1
    out = np.empty(n_pairs, dtype=np.float64)
    if n_pairs == 0:
        return out
    eps = np.float32(epsilon)
    half = np.float32(0.5)
    block = min(_BLOCK, n_pairs)
    buffers = np.empty((4, block * int(support[-1])), dtype=np.float32)
    for i0 in range(0, n_pairs, block):
        i1 = min(i0 + block, n_pairs)
        lim = support[i0:i1]
        k, w = i1 - i0, int(lim[-1])
        p, q, m, r = (buf[: k * w].reshape(k, w) for buf in buffers)
        np.add(a[i0:i1, :w], eps, out=p)
        np.add(a[i0 + 1 : i1 + 1, :w], eps, out=q)
        band = int(lim[0])  # columns ≥ band are past the support of some pair in this block
        if band < w:
            past = np.arange(band, w)[None, :] >= lim[:, None]
            p[:, band:][past] = eps
            q[:, band:][past] = eps
        p /= p.sum(axis=1, keepdims=True)
        q /= q.sum(axis=1, keepdims=True)
        np.add(p, q, out=m)
        m *= half
        np.divide(p, m, out=r)
        np.log(r, out=r)
        r *= p
        first = r.sum(axis=1, dtype=np.float32)
        np.divide(q, m, out=r)
        np.log(r, out=r)
        r *= q
        out[i0:i1] = 0.5 * (first.astype(np.float64) + r.sum(axis=1, dtype=np.float32))
    return np.clip(out, 0.0, LN2)


def smooth_trace(trace: Any, config: JSDConfig = JSDConfig()) -> np.ndarray:
    """Savitzky–Golay smoothing (``scipy.signal.savgol_filter``, window/polyorder from config).

    Traces shorter than the window are returned unsmoothed (a copy); length is preserved.
    """
    t = to_numpy(trace, np.float64)
    if t.size < config.savgol_window:
        return t.copy()
    return savgol_filter(t, config.savgol_window, config.savgol_polyorder)


def detect_peaks(smoothed: Any, config: JSDConfig = JSDConfig()) -> np.ndarray:
    """Peak indices (into the trace, sorted, int64) of a smoothed JSD trace.

    ``threshold``: every index with value > mean + k·std (the original detector; with
    ``threshold_merge_runs`` only the argmax of each run above threshold).
    ``find_peaks``: ``scipy.signal.find_peaks`` with height = max(mean + ``peak_height_k``·std,
    ``peak_min_height``) (each optional), ``peak_prominence`` and ``peak_distance``.
    """
    s = to_numpy(smoothed, np.float64)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    mean, std = float(s.mean()), float(s.std())
    if config.peak_mode == "threshold":
        above = s > mean + config.threshold_k * std
        idx = np.flatnonzero(above)
        if not config.threshold_merge_runs or idx.size == 0:
            return idx.astype(np.int64)
        run_id = np.cumsum(np.diff(idx, prepend=idx[0] - 2) > 1) - 1
        order = np.lexsort((-s[idx], run_id))  # per run, the highest value first
        first_of_run = np.r_[True, run_id[order][1:] != run_id[order][:-1]]
        return np.sort(idx[order][first_of_run]).astype(np.int64)
    heights = [
        h
        for h in (
            None if config.peak_height_k is None else mean + config.peak_height_k * std,
            config.peak_min_height,
        )
        if h is not None
    ]
    peaks, _ = find_peaks(
        s,
        height=max(heights) if heights else None,
        prominence=config.peak_prominence,
        distance=config.peak_distance,
    )
    return peaks.astype(np.int64)


def jsd_boundaries(smoothed: Any, config: JSDConfig = JSDConfig()) -> np.ndarray:
    """Smoothed trace ``(n_cot - 1,)`` → boundaries: CoT-relative token indices (int64, sorted)
    where a new segment starts (peak index + 1)."""
    return detect_peaks(smoothed, config) + 1


def snap_boundaries(boundaries: Sequence[int] | np.ndarray, allowed: Any) -> np.ndarray:
    """Move each boundary back to the nearest allowed CoT token at or before it (e.g. a word
    start, see ``alignment.word_start_tokens``); boundaries that land on 0 and duplicates drop.

    ``boundaries``: CoT-relative token indices; ``allowed``: bool ``(n_cot,)``. Result: sorted int64.
    """
    b = np.asarray(boundaries, dtype=np.int64)
    allowed_idx = np.flatnonzero(to_numpy(allowed).astype(bool))
    if b.size == 0 or allowed_idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    position = np.searchsorted(allowed_idx, b, side="right") - 1
    snapped = np.where(position >= 0, allowed_idx[np.clip(position, 0, None)], 0)
    return np.unique(snapped[snapped > 0]).astype(np.int64)


def segments_from_boundaries(boundaries: Sequence[int] | np.ndarray, n_tokens: int) -> list[tuple[int, int]]:
    """Boundaries (token indices where a segment starts) → half-open token ranges covering
    ``[0, n_tokens)``; duplicates and out-of-range boundaries are ignored, so no segment is empty."""
    if n_tokens <= 0:
        return []
    b = np.unique(to_numpy(boundaries, np.int64))
    b = b[(b > 0) & (b < n_tokens)]
    edges = np.concatenate(([0], b, [n_tokens]))
    return [(int(s), int(e)) for s, e in zip(edges[:-1], edges[1:], strict=True)]
