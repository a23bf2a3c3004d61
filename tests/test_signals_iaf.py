"""IAF matrix, per-head input fractions, implicit steps, high-IAF token selection, trace signals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.signals import SignalConfig, compute_trace_signals
from app.signals.config import IAFConfig
from app.signals.iaf import (
    high_iaf_tokens,
    iaf_matrix,
    implicit_segment_mask,
    implicit_steps,
    input_fraction,
    input_fraction_per_head,
    segment_input_mass,
)


def test_iaf_matrix_by_hand() -> None:
    # 4 CoT tokens, columns: 0 = template, 1..3 = problem tokens, 4.. = CoT.
    rows = np.array(
        [
            [0.5, 0.5, 0.0, 0.0, 0.0],
            [0.1, 0.1, 0.2, 0.0, 0.6],
            [0.0, 0.0, 0.0, 0.3, 0.7],
            [1.0, 0.0, 0.0, 0.0, 0.0],  # no mass on the problem
        ]
    )
    iaf = iaf_matrix(rows, (1, 4), [(0, 2), (2, 3), (3, 4)])
    np.testing.assert_allclose(iaf[0], [0.6 / 0.8, 0.2 / 0.8, 0.0])
    np.testing.assert_allclose(iaf[1], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(iaf[2], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(iaf[:2].sum(axis=1), 1.0)
    np.testing.assert_allclose(segment_input_mass(rows, (1, 4), [(0, 2), (2, 3), (3, 4)]), [0.4, 0.3, 0.0])
    np.testing.assert_allclose(iaf_matrix(torch.tensor(rows), (1, 4), [(0, 4)]), [[0.6 / 1.1, 0.2 / 1.1, 0.3 / 1.1]])
    with pytest.raises(ValueError):
        iaf_matrix(rows, (1, 4), [(0, 5)])


def test_iaf_rows_sum_to_one_on_random_attention() -> None:
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(60), size=40)
    segs = [(0, 7), (7, 8), (8, 30), (30, 40)]
    iaf = iaf_matrix(rows, (10, 35), segs)
    assert iaf.shape == (4, 25)
    np.testing.assert_allclose(iaf.sum(axis=1), 1.0, atol=1e-12)
    s, e = segs[2]
    expected = rows[s:e, 10:35].sum(axis=0) / rows[s:e, 10:35].sum()
    np.testing.assert_allclose(iaf[2], expected, atol=1e-12)


def test_input_fraction_per_head() -> None:
    att = np.zeros((2, 3, 6), dtype=np.float32)  # H=2, n_q=3, T=6; input = columns 1..3
    att[0] = [[0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]]
    att[1, 0] = [0, 0.25, 0.25, 0, 0.5, 0]  # rows 1 and 2 of head 1 have no mass → 0
    frac = input_fraction_per_head(att, (1, 4))
    np.testing.assert_allclose(frac, [[0.5, 0.0, 0.6], [0.5, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(input_fraction(att[0], (1, 4)), [0.5, 0.0, 0.6], atol=1e-6)
    np.testing.assert_allclose(input_fraction_per_head(torch.from_numpy(att).bfloat16(), (1, 4)), frac, atol=1e-2)


def test_implicit_steps_need_a_sustained_low_stretch() -> None:
    f = np.full(40, 0.6)
    f[5:10] = 0.05  # 5 tokens: too short for min 8
    f[20:31] = 0.02  # 11 tokens
    f[36:] = 0.0  # 4 tokens at the end
    cfg = IAFConfig(implicit_threshold=0.1, implicit_min_tokens=8)
    assert implicit_steps(f, cfg) == [(20, 31)]
    assert implicit_steps(f, IAFConfig(implicit_threshold=0.1, implicit_min_tokens=4)) == [(5, 10), (20, 31), (36, 40)]
    heads = np.stack([f, f * 0.5, np.full(40, 0.9)])  # averaged over heads: 0.9/3 keeps all above 0.1
    assert implicit_steps(heads, cfg) == []
    assert implicit_steps(np.zeros(0), cfg) == []
    mask = implicit_segment_mask([(0, 20), (20, 26), (26, 34), (34, 40)], [(20, 31)], 40)
    assert mask.tolist() == [False, True, True, False]  # 5/8 of the third segment is in the run


def test_high_iaf_tokens_skip_punctuation_and_respect_top_k() -> None:
    text = "Tom has 3 apples . He eats 2 ."
    spans = np.array([(0, 3), (4, 7), (8, 9), (10, 16), (17, 18), (19, 21), (22, 26), (27, 28), (29, 30)])
    iaf = np.array([0.05, 0.02, 0.3, 0.2, 0.25, 0.0, 0.03, 0.1, 0.05])
    assert high_iaf_tokens(iaf, text, spans, IAFConfig(high_iaf_top_k=3, high_iaf_min_ratio=0.5)).tolist() == [2, 3, 7]
    assert high_iaf_tokens(
        iaf, text, spans, IAFConfig(high_iaf_top_k=3, high_iaf_min_ratio=0.5, skip_punctuation=False)
    ).tolist() == [2, 3, 4]
    # Ratio 2.0 over 9 tokens: IAF must be ≥ 0.222…
    assert high_iaf_tokens(iaf, text, spans, IAFConfig(high_iaf_top_k=9)).tolist() == [2]
    assert high_iaf_tokens(np.zeros(9), text, spans).tolist() == []


def test_compute_trace_signals_shapes_and_given_head_fractions() -> None:
    rng = np.random.default_rng(5)
    prompt, n_cot = 30, 50
    rows = rng.dirichlet(np.ones(prompt + n_cot), size=n_cot).astype(np.float32)
    heads = np.full((4, n_cot), 0.5, dtype=np.float32)
    heads[:, 10:25] = 0.01
    sig = compute_trace_signals(torch.from_numpy(rows), (5, 25), (prompt, prompt + n_cot), SignalConfig(), heads)
    assert sig.jsd_raw.shape == sig.jsd_smoothed.shape == (n_cot - 1,)
    assert sig.segments[0][0] == 0 and sig.segments[-1][1] == n_cot
    assert sig.iaf.shape == (len(sig.segments), 20)
    np.testing.assert_allclose(sig.iaf.sum(axis=1), 1.0, atol=1e-9)
    assert sig.implicit_runs == [(10, 25)]
    assert sig.input_fraction.shape == (n_cot,) and sig.segment_input_fraction.shape == (len(sig.segments),)
    assert sig.absolute_segments()[0][0] == prompt
    assert sig.implicit_segments.dtype == bool and sig.implicit_segments.shape == (sig.n_segments,)
    # Without per-head fractions they come from the rows (Dirichlet mass on 20 of 80 columns ≈ 0.25).
    own = compute_trace_signals(rows, (5, 25), (prompt, prompt + n_cot))
    assert own.implicit_runs == [] and 0.1 < own.input_fraction.mean() < 0.4
    with pytest.raises(ValueError):
        compute_trace_signals(rows, (5, 25), (prompt, prompt + n_cot), SignalConfig(), heads[:, :10])
