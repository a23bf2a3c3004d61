"""One call from a teacher trace's reduced attention to its step signals (JSD + IAF + implicit steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.signals.arrays import check_range, to_numpy
from app.signals.config import SignalConfig
from app.signals.iaf import (
    iaf_from_sums,
    implicit_segment_mask,
    implicit_steps,
    input_fraction,
    mass_from_sums,
    problem_segment_sums,
    segment_means,
)
from app.signals.jsd import jsd_boundaries, jsd_trace, segments_from_boundaries, smooth_trace, snap_boundaries

__all__ = ["TraceSignals", "compute_trace_signals"]


@dataclass(frozen=True)
class TraceSignals:
    """Signals of one CoT.  Token indices are CoT-relative (0 = first CoT token) unless noted.

    * ``jsd_raw``, ``jsd_smoothed``: ``(n_cot - 1,)`` nats; index i = transition token i → i+1.
    * ``boundaries``: ``(n_boundaries,)`` int64, tokens where a new segment starts.
    * ``segments``: half-open token ranges covering ``[0, n_cot)``, none empty.
    * ``iaf``: ``(n_segments, n_problem)``, rows sum to 1 over problem tokens (0-rows: no mass).
    * ``segment_input_mass``: ``(n_segments,)`` mean attention mass per token on the problem.
    * ``input_fraction``: ``(n_cot,)`` share of attention on the problem (mean over heads when
      per-head fractions were given).  ``segment_input_fraction``: its mean per segment.
    * ``implicit_runs``: token ranges where ``input_fraction`` stays low (implicit computation);
      ``implicit_segments``: ``(n_segments,)`` bool, segments mostly inside such runs.
    * ``cot_token_range``, ``problem_token_range``: absolute positions in the full sequence.
    """

    jsd_raw: np.ndarray
    jsd_smoothed: np.ndarray
    boundaries: np.ndarray
    segments: list[tuple[int, int]]
    iaf: np.ndarray
    segment_input_mass: np.ndarray
    input_fraction: np.ndarray
    segment_input_fraction: np.ndarray
    implicit_runs: list[tuple[int, int]]
    implicit_segments: np.ndarray
    cot_token_range: tuple[int, int]
    problem_token_range: tuple[int, int]

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    def absolute_segments(self) -> list[tuple[int, int]]:
        """``segments`` as absolute token positions in the full (prompt + CoT) sequence."""
        off = self.cot_token_range[0]
        return [(s + off, e + off) for s, e in self.segments]


def _check_finite_trace(raw: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first CoT token pair whose JSD is NaN/inf.

    Any non-finite entry in a row's causal context propagates into the O(n) JSD trace, so NaN rows
    never pass silently as "no boundaries" (checked before smoothing, which would fail obscurely).
    """
    if not np.isfinite(raw).all():
        i = int(np.flatnonzero(~np.isfinite(raw))[0])
        raise ValueError(f"non-finite attention rows: the JSD of CoT tokens {i} → {i + 1} is {raw[i]}")


def _check_finite_problem(fraction: np.ndarray, sums: np.ndarray, segments: list[tuple[int, int]]) -> None:
    """Raise ``ValueError`` naming the first CoT token (or segment) whose attention on the problem is
    NaN/inf (the input fraction and the per-segment problem sums, O(n)): never an all-zero IAF."""
    if not np.isfinite(fraction).all():
        t = int(np.flatnonzero(~np.isfinite(fraction))[0])
        raise ValueError(f"non-finite input fraction at CoT token {t}")
    bad = ~np.isfinite(sums).all(axis=1)
    if bad.any():
        s, e = segments[int(np.flatnonzero(bad)[0])]
        raise ValueError(f"non-finite attention on the problem tokens in CoT tokens [{s}, {e})")


def compute_trace_signals(
    rows: Any,
    problem_token_range: tuple[int, int],
    cot_token_range: tuple[int, int],
    config: SignalConfig = SignalConfig(),
    input_fraction_per_head: Any | None = None,
    boundary_allowed: Any | None = None,
) -> TraceSignals:
    """Aggregated CoT attention rows → :class:`TraceSignals`.

    ``rows``: ``(n_cot, T)`` (numpy or torch), row t = attention of the query at CoT token t (absolute
    position ``cot_start + t``; causal, see ``app.teacher.capture``) over absolute
    positions ``0 … T-1`` (already reduced over the configured layers/heads, see
    ``aggregate_heads``/``aggregate_attention``).  ``problem_token_range``: absolute half-open
    range of the problem-text tokens (template excluded).  ``cot_token_range``: absolute
    half-open range of the CoT tokens (``n_cot`` long).  ``input_fraction_per_head``:
    optional ``(H, n_cot)`` (or ``(n_cot,)``) input fractions for implicit-step detection;
    when absent they are computed from ``rows`` over the problem tokens.  ``boundary_allowed``:
    optional bool ``(n_cot,)``; boundaries are snapped back to allowed tokens (word starts), so a
    segment never starts mid-word. Non-finite attention raises ``ValueError`` naming the CoT token.
    """
    a = to_numpy(rows)
    if a.ndim != 2:
        raise ValueError(f"rows must be (n_cot, T), got shape {a.shape}")
    n_cot = a.shape[0]
    problem = check_range(problem_token_range, a.shape[1], "problem_token_range")
    cot = check_range(cot_token_range, a.shape[1], "cot_token_range")

    raw = jsd_trace(a, cot, problem, config.jsd)  # NaN/inf in a row's context propagate here
    _check_finite_trace(raw)
    smoothed = smooth_trace(raw, config.jsd)
    boundaries = jsd_boundaries(smoothed, config.jsd)
    if boundary_allowed is not None:
        boundaries = snap_boundaries(boundaries, boundary_allowed)
    segments = segments_from_boundaries(boundaries, n_cot)

    if input_fraction_per_head is None:
        fraction = input_fraction(a, problem).astype(np.float64)
    else:
        f = to_numpy(input_fraction_per_head, np.float64)
        fraction = f.mean(axis=0) if f.ndim == 2 else f
        if fraction.shape != (n_cot,):
            raise ValueError(f"input_fraction_per_head has {fraction.shape[0]} tokens, rows have {n_cot}")
    sums = problem_segment_sums(a, problem, segments)
    _check_finite_problem(fraction, sums, segments)
    runs = implicit_steps(fraction, config.iaf)
    return TraceSignals(
        jsd_raw=raw,
        jsd_smoothed=smoothed,
        boundaries=boundaries,
        segments=segments,
        iaf=iaf_from_sums(sums),
        segment_input_mass=mass_from_sums(sums, segments),
        input_fraction=fraction,
        segment_input_fraction=segment_means(fraction, segments),
        implicit_runs=runs,
        implicit_segments=implicit_segment_mask(segments, runs, n_cot, config.iaf.implicit_segment_coverage),
        cot_token_range=cot,
        problem_token_range=problem,
    )
