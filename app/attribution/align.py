"""Align predicted with reference steps, and match predicted with reference regions.

Step alignment is an assignment (``scipy.optimize.linear_sum_assignment``) maximising, per
(predicted step p, reference step r) pair,

    similarity = overlap(p, r) + OP_MATCH_WEIGHT · [op_p == op_r] − POSITION_WEIGHT · |i − j| / n

where ``overlap`` is the multiset Jaccard index of the two steps' operand groundings (problem
values, constant values, and one token per step operand), i, j are the 0-based step positions
and n the larger step count. Operand overlap dominates, the op breaks ties between steps that
read the same numbers, and position breaks the rest (two identical steps align in order). The
assignment is then refined (:data:`REFINE_PASSES` times at most, until stable) with each step
operand keyed by the reference step its target is aligned to, which separates steps that read
the same numbers from different earlier steps (``MUL(step 1, 5)`` vs ``MUL(step 6, 5)``). A
predicted program that computes independent steps in another order therefore aligns to the
right reference steps, and step references are compared through the alignment.

Regions (C1) are CHAR spans. A reference region counts as found when predicted regions cover at
least :data:`REGION_MIN_COVERAGE` of its characters; predicted regions are spurious when less than
:data:`REGION_MIN_PRECISION` of their characters lie inside reference regions. Token-level
taggers and clause expansion disagree on boundaries by a word or a punctuation mark; these two
thresholds are the region match tolerance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from app.attribution.program_view import Step

REGION_MIN_COVERAGE = 0.5
"""Fraction of a reference region's characters predicted regions must cover for it to be found."""
REGION_MIN_PRECISION = 0.5
"""Fraction of all predicted-region characters that must lie inside reference regions."""
OP_MATCH_WEIGHT = 0.5
POSITION_WEIGHT = 0.1


REFINE_PASSES = 3
"""Re-alignments with step operands keyed by the reference step they map to (see align_steps)."""


def _keys(step: Step, step_ids: Mapping[int, int] | None) -> Counter:
    """Operand keys: groundings; with ``step_ids``, step operands become ("step", mapped id)."""
    if step_ids is None:
        return Counter(o.grounding for o in step.operands)
    return Counter(("step", str(step_ids.get(o.ref, -1))) if o.kind == "step" else o.grounding
                   for o in step.operands)


class _Identity(dict):
    def get(self, key, default=None):  # noqa: ANN001, ANN201 - reference ids map to themselves
        return key


def operand_overlap(predicted: Step, reference: Step, to_reference: Mapping[int, int] | None = None) -> float:
    """Multiset Jaccard index in [0, 1] of the two steps' operand keys (1 when both have none).

    Without ``to_reference`` every step operand is the same key ("an earlier step"); with it
    (predicted step id → reference step id) a predicted step operand must point at the step the
    reference operand points at.
    """
    a = _keys(predicted, to_reference)
    b = _keys(reference, None if to_reference is None else _Identity())
    union = sum((a | b).values())
    return 1.0 if union == 0 else sum((a & b).values()) / union


def similarity_matrix(predicted: Sequence[Step], reference: Sequence[Step],
                      to_reference: Mapping[int, int] | None = None) -> np.ndarray:
    """(P, R) float matrix of pair similarities (see the module docstring)."""
    n = max(len(predicted), len(reference), 1)
    sim = np.zeros((len(predicted), len(reference)))
    for i, p in enumerate(predicted):
        for j, r in enumerate(reference):
            sim[i, j] = (operand_overlap(p, r, to_reference) + OP_MATCH_WEIGHT * (p.op is not None and p.op == r.op)
                         - POSITION_WEIGHT * abs(i - j) / n)
    return sim


@dataclass(frozen=True)
class Alignment:
    """Predicted step id → reference step id for the aligned pairs (1-based step ids).

    ``pairs`` are in reference step order; ``unmatched_predicted`` / ``unmatched_reference`` hold
    the ids left over when the step counts differ.
    """

    pairs: tuple[tuple[int, int], ...]
    unmatched_predicted: tuple[int, ...] = ()
    unmatched_reference: tuple[int, ...] = ()

    @property
    def to_reference(self) -> dict[int, int]:
        return dict(self.pairs)

    def as_json(self) -> list[list[int]]:
        return [[p, r] for p, r in self.pairs]


def align_steps(predicted: Sequence[Step], reference: Sequence[Step]) -> Alignment:
    """The maximum-similarity one-to-one alignment of predicted to reference steps."""
    if not predicted or not reference:
        return Alignment((), tuple(s.step for s in predicted), tuple(s.step for s in reference))
    to_reference: dict[int, int] | None = None
    for _ in range(1 + REFINE_PASSES):
        rows, cols = linear_sum_assignment(similarity_matrix(predicted, reference, to_reference), maximize=True)
        mapping = {predicted[i].step: reference[j].step for i, j in zip(rows, cols)}
        if mapping == to_reference:
            break
        to_reference = mapping
    pairs = sorted(to_reference.items(), key=lambda pr: pr[1])
    matched_p, matched_r = {p for p, _ in pairs}, {r for _, r in pairs}
    return Alignment(
        tuple(pairs),
        tuple(s.step for s in predicted if s.step not in matched_p),
        tuple(s.step for s in reference if s.step not in matched_r),
    )


# --------------------------------------------------------------------------- regions


def _merge(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _covered(span: tuple[int, int], cover: Sequence[tuple[int, int]]) -> int:
    """Characters of ``span`` inside the merged, sorted spans ``cover``."""
    return sum(max(0, min(span[1], e) - max(span[0], s)) for s, e in cover)


@dataclass(frozen=True)
class RegionMatch:
    """C1 comparison: ``missed`` reference regions, per-region ``coverage``, overall ``precision``."""

    missed: tuple[tuple[int, int], ...]
    precision: float
    coverage: tuple[float, ...]

    @property
    def matches(self) -> bool:
        return not self.missed and self.precision >= REGION_MIN_PRECISION


def match_regions(predicted: Sequence[tuple[int, int]], reference: Sequence[tuple[int, int]]) -> RegionMatch:
    """Compare predicted with reference CHAR spans under the region tolerance (module docstring).

    With no reference regions, any predicted region is spurious (precision 0); with none on
    either side the regions match.
    """
    pred, ref = _merge(predicted), _merge(reference)
    coverage = tuple(_covered(r, pred) / (r[1] - r[0]) for r in ref)
    missed = tuple(r for r, c in zip(ref, coverage) if c < REGION_MIN_COVERAGE)
    predicted_chars = sum(e - s for s, e in pred)
    precision = 1.0 if predicted_chars == 0 else sum(_covered(p, ref) for p in pred) / predicted_chars
    return RegionMatch(missed, round(precision, 4), tuple(round(c, 4) for c in coverage))
