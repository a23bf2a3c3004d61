"""Benchmark: vectorised trace signals vs a straightforward per-token Python loop.

A synthetic teacher trace: a 1,000-token CoT over a 150-token problem (plus chat-template
tokens), one layer with 28 heads whose attention has a step structure (each ~12-token step
reads its own problem span), local CoT attention, an attention sink and noise.  The heads are
reduced to the inputs ``compute_trace_signals`` receives from teacher extraction — aggregated
rows ``(n_cot, T)`` and per-head input fractions ``(28, n_cot)`` — and then both paths compute
the JSD trace, Savitzky–Golay smoothing, peaks, segments, the IAF matrix, the per-segment input
mass, the head-averaged input fraction and the implicit runs.  The naive path loops over CoT
tokens (and over each token's context entries and heads) in plain Python; both must agree.

Pinned to one CPU core (single-threaded BLAS/OpenMP); times are medians of this process's CPU
time.  Prints one JSON line on stdout:
``{"ms_per_problem": a, "naive_ms_per_problem": b, "speedup": b / a}``; details go to stderr.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy.signal import savgol_filter  # noqa: E402

from app.signals import (  # noqa: E402
    SignalConfig,
    TraceSignals,
    aggregate_heads,
    compute_trace_signals,
    detect_peaks,
    input_fraction_per_head,
    segments_from_boundaries,
)


def synthetic_layer(
    n_cot: int, n_problem: int, n_heads: int, template: tuple[int, int], seed: int
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Per-head attention of the CoT rows ``(H, n_cot, T)`` float32 plus the problem and CoT token ranges."""
    rng = np.random.default_rng(seed)
    before, after = template
    problem = (before, before + n_problem)
    cot_start = before + n_problem + after
    width = cot_start + n_cot
    att = rng.random((n_heads, n_cot, width), dtype=np.float32)
    att **= 8  # sparse-ish noise
    att *= 0.002
    t = np.arange(n_cot)
    step_of = np.cumsum(rng.random(n_cot) < 1 / 12)  # ~12-token steps
    spans = rng.integers(0, n_problem - 12, size=step_of.max() + 1)
    reading = rng.random(step_of.max() + 1) > 0.2  # 20% of the steps are implicit (computing)
    head_focus = rng.uniform(0.2, 1.5, size=(n_heads, 1))
    for k in range(12):  # each step reads a 12-token problem span
        cols = problem[0] + spans[step_of] + k
        att[:, t, cols] += (head_focus * reading[step_of] / 12).astype(np.float32)
    for lag in range(4):  # local CoT attention
        cols = cot_start + np.maximum(t - lag, 0)
        att[:, t, cols] += np.float32(0.1)
    att[:, :, 0] += np.float32(0.3)  # attention sink
    causal = np.arange(width)[None, :] <= (cot_start + t)[:, None]
    att *= causal[None]
    att /= att.sum(axis=2, keepdims=True)
    return att, problem, (cot_start, cot_start + n_cot)


def reduce_layer(att: np.ndarray, problem: tuple[int, int], config: SignalConfig) -> tuple[np.ndarray, np.ndarray]:
    """What teacher extraction does per layer (on the GPU there): head-aggregated rows and
    per-head input fractions."""
    return aggregate_heads(att, config.jsd), input_fraction_per_head(att, problem)


# --------------------------------------------------------------------------- naive baseline


def naive_trace_signals(
    rows: list[list[float]],
    head_fraction: list[list[float]],
    problem: tuple[int, int],
    cot: tuple[int, int],
    config: SignalConfig,
) -> dict[str, Any]:
    """The same signals, one CoT token at a time in plain Python (the pre-vectorisation style)."""
    eps = config.jsd.epsilon
    cot_start, _ = cot
    n_cot = len(rows)
    jsd_raw = []
    for t in range(1, n_cot):  # pair (t-1, t), both cut to t's context
        prev, cur = rows[t - 1], rows[t]
        length = cot_start + t + 1
        zp = sum(prev[j] + eps for j in range(length))
        zq = sum(cur[j] + eps for j in range(length))
        acc = 0.0
        for j in range(length):
            p = (prev[j] + eps) / zp
            q = (cur[j] + eps) / zq
            m = 0.5 * (p + q)
            acc += 0.5 * p * math.log(p / m) + 0.5 * q * math.log(q / m)
        jsd_raw.append(min(max(acc, 0.0), math.log(2)))
    smoothed = savgol_filter(np.array(jsd_raw), config.jsd.savgol_window, config.jsd.savgol_polyorder)
    boundaries = detect_peaks(smoothed, config.jsd) + 1
    segments = segments_from_boundaries(boundaries, n_cot)

    p0, p1 = problem
    iaf, mass = [], []
    for s, e in segments:
        sums = [0.0] * (p1 - p0)
        for t in range(s, e):
            row = rows[t]
            for j in range(p0, p1):
                sums[j - p0] += row[j]
        total = sum(sums)
        iaf.append([x / total if total > 0 else 0.0 for x in sums])
        mass.append(total / (e - s))

    n_heads = len(head_fraction)
    fraction = []
    for t in range(n_cot):
        fraction.append(sum(head_fraction[h][t] for h in range(n_heads)) / n_heads)
    runs, start = [], None
    for t in range(n_cot + 1):
        low = t < n_cot and fraction[t] < config.iaf.implicit_threshold
        if low and start is None:
            start = t
        elif not low and start is not None:
            if t - start >= config.iaf.implicit_min_tokens:
                runs.append((start, t))
            start = None
    return {
        "jsd_raw": jsd_raw,
        "boundaries": boundaries.tolist(),
        "segments": segments,
        "iaf": iaf,
        "segment_input_mass": mass,
        "input_fraction": fraction,
        "implicit_runs": runs,
    }


def rowwise_numpy_jsd(rows: np.ndarray, cot_start: int, eps: float) -> np.ndarray:
    """A middle ground for reference: a per-token loop whose body is numpy (reported on stderr)."""
    out = np.empty(rows.shape[0] - 1)
    for t in range(1, rows.shape[0]):
        length = cot_start + t + 1
        p = rows[t - 1, :length].astype(np.float64) + eps
        q = rows[t, :length].astype(np.float64) + eps
        p /= p.sum()
        q /= q.sum()
        m = 0.5 * (p + q)
        out[t - 1] = 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))
    return out


# --------------------------------------------------------------------------- timing


def median_ms(fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.process_time) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call.  Default clock: this process's CPU
    time — the process is pinned to one core and single-threaded, so this is the work done on one
    core, unaffected by other processes competing for it (wall time is reported on stderr)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return statistics.median(times)


def check_agreement(fast: TraceSignals, naive: dict[str, Any]) -> None:
    np.testing.assert_allclose(fast.jsd_raw, naive["jsd_raw"], atol=2e-6)
    assert fast.boundaries.tolist() == naive["boundaries"], "boundaries differ"
    assert fast.segments == naive["segments"], "segments differ"
    np.testing.assert_allclose(fast.iaf, np.array(naive["iaf"]), atol=1e-6)
    np.testing.assert_allclose(fast.segment_input_mass, naive["segment_input_mass"], atol=1e-6)
    np.testing.assert_allclose(fast.input_fraction, naive["input_fraction"], atol=1e-6)
    assert fast.implicit_runs == naive["implicit_runs"], "implicit runs differ"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cot", type=int, default=1000)
    parser.add_argument("--n-problem", type=int, default=150)
    parser.add_argument("--heads", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--naive-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config = SignalConfig()
    att, problem, cot = synthetic_layer(args.n_cot, args.n_problem, args.heads, (24, 8), args.seed)
    # What teacher extraction hands over (it reduces each layer on the GPU as it is produced).
    rows, head_fraction = reduce_layer(att, problem, config)
    reduce_ms = median_ms(partial(reduce_layer, att, problem, config), 3)
    del att

    def fast_path() -> TraceSignals:
        return compute_trace_signals(rows, problem, cot, config, head_fraction)

    def naive_path() -> dict[str, Any]:  # plain Python needs lists: the conversion is part of its cost
        return naive_trace_signals(rows.tolist(), head_fraction.tolist(), problem, cot, config)

    fast = fast_path()
    check_agreement(fast, naive_path())

    fast_ms = median_ms(fast_path, args.repeats)
    naive_ms = median_ms(naive_path, args.naive_repeats)
    fast_wall_ms = median_ms(fast_path, args.repeats, time.perf_counter)
    naive_wall_ms = median_ms(naive_path, args.naive_repeats, time.perf_counter)
    rowwise_ms = median_ms(lambda: rowwise_numpy_jsd(rows, cot[0], config.jsd.epsilon), 3)
    np.testing.assert_allclose(rowwise_numpy_jsd(rows, cot[0], config.jsd.epsilon), fast.jsd_raw, atol=2e-6)

    print(
        json.dumps(
            {
                "n_cot": args.n_cot,
                "n_problem": args.n_problem,
                "heads": args.heads,
                "T": int(rows.shape[1]),
                "segments": fast.n_segments,
                "implicit_runs": len(fast.implicit_runs),
                "wall_ms_per_problem": round(fast_wall_ms, 3),
                "naive_wall_ms_per_problem": round(naive_wall_ms, 1),
                "reduce_28_heads_ms": round(reduce_ms, 2),
                "rowwise_numpy_jsd_loop_ms": round(rowwise_ms, 2),
                "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            }
        ),
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "ms_per_problem": round(fast_ms, 3),
                "naive_ms_per_problem": round(naive_ms, 1),
                "speedup": round(naive_ms / fast_ms, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
