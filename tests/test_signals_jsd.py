"""JSD, smoothing, peaks, segments and head/layer aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError
from scipy.signal import savgol_filter

from app.signals.config import JSDConfig
from app.signals.jsd import (
    LN2,
    aggregate_attention,
    aggregate_heads,
    detect_peaks,
    jsd,
    jsd_boundaries,
    jsd_trace,
    segments_from_boundaries,
    smooth_trace,
)

dists = arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 1e3, allow_nan=False, allow_infinity=False))


def _reference_jsd(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    """Textbook definition: KL to the midpoint, natural log, after ε-smoothing."""
    p = (p + eps) / (p + eps).sum()
    q = (q + eps) / (q + eps).sum()
    m = (p + q) / 2
    return 0.5 * float(np.sum(p * np.log(p / m))) + 0.5 * float(np.sum(q * np.log(q / m)))


def test_known_values() -> None:
    assert jsd([1, 0], [0, 1], 1e-12) == pytest.approx(LN2, abs=1e-9)
    assert jsd([1, 0, 0, 0], [0, 0.5, 0.5, 0], 1e-12) == pytest.approx(LN2, abs=1e-9)
    assert jsd([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert float(jsd([0.9, 0.1], [0.1, 0.9])) == pytest.approx(
        _reference_jsd(np.array([0.9, 0.1]), np.array([0.1, 0.9]), 1e-10)
    )
    assert jsd(np.zeros(5), np.zeros(5)) == 0.0  # all-zero rows: uniform after smoothing, no NaN


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_jsd_properties(data: st.DataObject) -> None:
    p = data.draw(dists)
    q = data.draw(arrays(np.float64, p.shape, elements=st.floats(0, 1e3, allow_nan=False, allow_infinity=False)))
    d_pq, d_qp, d_pp = float(jsd(p, q)), float(jsd(q, p)), float(jsd(p, p))
    assert d_pp == 0.0
    assert d_pq == d_qp
    assert 0.0 <= d_pq <= LN2
    assert not math.isnan(d_pq)
    assert d_pq == pytest.approx(_reference_jsd(p, q, 1e-10), abs=1e-9)


def test_batched_and_torch_inputs() -> None:
    p = np.array([[1.0, 0.0], [0.25, 0.75]])  # exact in bf16
    q = np.array([[0.0, 1.0], [0.25, 0.75]])
    np.testing.assert_allclose(jsd(p, q, 1e-12), [LN2, 0.0], atol=1e-9)
    np.testing.assert_allclose(jsd(torch.tensor(p, dtype=torch.bfloat16), torch.tensor(q)), jsd(p, q), atol=1e-9)


def test_full_context_pads_the_previous_row_with_a_zero() -> None:
    # Prompt of 2 tokens, 3 CoT tokens at positions 2, 3, 4 (causal rows).
    rows = np.array(
        [
            [0.5, 0.3, 0.2, 0.0, 0.0],
            [0.5, 0.3, 0.2, 0.0, 0.0],  # same mass, one more column available → still 0
            [0.1, 0.1, 0.1, 0.1, 0.6],
        ],
        dtype=np.float32,
    )
    trace = jsd_trace(rows, (2, 5), (0, 2), JSDConfig())
    assert trace.shape == (2,)
    assert trace[0] == 0.0
    expected = _reference_jsd(np.array([0.5, 0.3, 0.2, 0.0, 0.0]), rows[2].astype(np.float64), 1e-10)
    assert trace[1] == pytest.approx(expected, abs=1e-6)
    # The pair (t-1, t) is cut to t's context: a stray value beyond it is ignored.
    leaky = rows.copy()
    leaky[0, 4] = 0.9
    assert jsd_trace(leaky, (2, 5), (0, 2), JSDConfig())[0] == 0.0


def test_input_context_renormalises_problem_columns() -> None:
    rows = np.array(
        [
            [0.8, 0.1, 0.1, 0.0],
            [0.2, 0.4, 0.4, 0.0],  # same problem distribution (cols 1-2), different mass elsewhere
            [0.2, 0.0, 0.0, 0.8],  # no mass on the problem at all → uniform, no NaN
        ],
        dtype=np.float32,
    )
    trace = jsd_trace(rows, (1, 4), (1, 3), JSDConfig(context="input"))
    assert trace[0] == 0.0
    assert trace[1] == pytest.approx(0.0, abs=1e-6)  # uniform vs uniform
    assert not np.isnan(trace).any()


def test_trace_rejects_inconsistent_ranges() -> None:
    rows = np.ones((3, 6), dtype=np.float32)
    with pytest.raises(ValueError):
        jsd_trace(rows, (2, 6), (0, 2))  # 4 CoT positions, 3 rows
    with pytest.raises(ValueError):
        jsd_trace(rows, (4, 7), (0, 2))  # beyond T
    assert jsd_trace(rows[:1], (5, 6), (0, 2)).shape == (0,)


def test_savgol_is_scipy_with_window_5_order_2() -> None:
    rng = np.random.default_rng(0)
    trace = rng.random(50)
    np.testing.assert_array_equal(smooth_trace(trace), savgol_filter(trace, 5, 2))
    short = np.array([0.1, 0.5, 0.2])
    np.testing.assert_array_equal(smooth_trace(short), short)


def test_threshold_mode_marks_every_index_above_mean_plus_k_std() -> None:
    s = np.array([0, 0, 1, 1, 0, 0, 0, 5, 0, 0], dtype=float)
    thr = s.mean() + s.std()
    assert detect_peaks(s, JSDConfig(peak_mode="threshold")).tolist() == np.flatnonzero(s > thr).tolist() == [7]
    assert detect_peaks(s, JSDConfig(peak_mode="threshold", threshold_k=0.0)).tolist() == [2, 3, 7]
    assert detect_peaks(s, JSDConfig(peak_mode="threshold", threshold_k=0.0, threshold_merge_runs=True)).tolist() == [
        2,
        7,
    ]


def test_find_peaks_mode_height_prominence_distance() -> None:
    s = np.array([0, 0.3, 0, 0, 1.0, 0, 0.9, 0, 0, 0, 0.2, 0.25, 0.2, 0], dtype=float)
    cfg = JSDConfig(peak_height_k=None, peak_distance=None)
    assert detect_peaks(s, cfg).tolist() == [1, 4, 6, 11]
    assert detect_peaks(s, cfg.model_copy(update={"peak_min_height": 0.28})).tolist() == [1, 4, 6]
    assert detect_peaks(s, cfg.model_copy(update={"peak_prominence": 0.5})).tolist() == [4, 6]
    assert detect_peaks(s, cfg.model_copy(update={"peak_distance": 3})).tolist() == [1, 4, 11]
    # default: height ≥ mean + 0.5·std, distance 3
    assert detect_peaks(s, JSDConfig()).tolist() == [4]
    assert jsd_boundaries(s, cfg).tolist() == [2, 5, 7, 12]


def test_segments_never_empty_and_cover_the_cot() -> None:
    assert segments_from_boundaries([3, 3, 0, 7, 10, 12], 10) == [(0, 3), (3, 7), (7, 10)]
    assert segments_from_boundaries(np.array([], dtype=np.int64), 4) == [(0, 4)]
    assert segments_from_boundaries([1], 0) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5, 60)), st.integers(1, 50))
def test_segments_property(boundaries: list[int], n: int) -> None:
    segs = segments_from_boundaries(boundaries, n)
    assert segs[0][0] == 0 and segs[-1][1] == n
    assert all(s < e for s, e in segs)
    assert all(a[1] == b[0] for a, b in zip(segs[:-1], segs[1:], strict=True))
    assert [s for s, _ in segs[1:]] == sorted({b for b in boundaries if 0 < b < n})


def test_aggregation_mean_max_selected_and_layers() -> None:
    rng = np.random.default_rng(1)
    att = rng.random((3, 4, 5, 6)).astype(np.float32)  # L, H, n_q, T
    np.testing.assert_allclose(aggregate_heads(att[0]), att[0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(aggregate_heads(att[0], JSDConfig(aggregation="max")), att[0].max(axis=0))
    sel = JSDConfig(aggregation="selected", heads=(1, 3))
    np.testing.assert_allclose(aggregate_heads(att[0], sel), att[0][[1, 3]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(aggregate_attention(att), att[-1].mean(axis=0), rtol=1e-6)
    two = JSDConfig(layers=(0, -1))
    np.testing.assert_allclose(aggregate_attention(list(att), two), (att[0].mean(0) + att[2].mean(0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(aggregate_heads(torch.from_numpy(att[1])), att[1].mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError):
        aggregate_attention(att, JSDConfig(layers=(5,)))


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        JSDConfig(savgol_window=4)
    with pytest.raises(ValidationError):
        JSDConfig(aggregation="selected")
    with pytest.raises(ValidationError):
        JSDConfig(context="prompt")
    with pytest.raises(ValidationError):
        JSDConfig(unknown_field=1)


@pytest.mark.parametrize("context", ["full", "input"])
def test_trace_equals_pairwise_reference_across_blocks(context: str) -> None:
    """The blocked float32 trace equals a per-token loop over the float64 ``jsd`` (150 tokens: 3 blocks)."""
    rng = np.random.default_rng(11)
    prompt, n_cot = 40, 150
    rows = rng.random((n_cot, prompt + n_cot)) ** 6
    rows[np.arange(prompt + n_cot)[None, :] > (prompt + np.arange(n_cot))[:, None]] = 0.0  # causal
    rows[60] = rows[59]  # one repeated row: exactly 0 in either context
    rows /= rows.sum(axis=1, keepdims=True)
    trace = jsd_trace(rows.astype(np.float32), (prompt, prompt + n_cot), (5, 30), JSDConfig(context=context))
    expected = []
    for t in range(1, n_cot):
        if context == "full":
            width = prompt + t + 1  # t's context; row t-1 is zero there at its last column
            expected.append(jsd(rows[t - 1, :width], rows[t, :width]))
        else:
            p, q = rows[t - 1, 5:30], rows[t, 5:30]
            expected.append(jsd(p / p.sum(), q / q.sum()))
    np.testing.assert_allclose(trace, expected, atol=1e-6)
    assert trace[59] == 0.0
