"""Uncertainty scores and diverse batch selection — pure functions on arrays (no DB, no I/O).

Every score is an *uncertainty* in [0, 1] (1 = most in need of a human). A candidate is a
problem with the model outputs we know for it: probability vectors of its decisions (region
relevance, operation class, …), the character spans of its attention-derived regions and of
its operand matches, and whether its teacher-derived program failed execution validation.

The batch is chosen greedily by priority, skipping near-duplicates of problems already in
the batch (Jaccard similarity of number-blind word shingles), up to the budget.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

STRATEGIES: tuple[str, ...] = (
    "composite",
    "least_confidence",
    "margin",
    "entropy",
    "disagreement",
    "execution",
    "random",
)
DEFAULT_STRATEGY = "composite"
COMPONENTS: tuple[str, ...] = ("least_confidence", "margin", "entropy", "disagreement", "execution")
DEFAULT_WEIGHTS: dict[str, float] = {
    "entropy": 0.3,
    "margin": 0.2,
    "least_confidence": 0.1,
    "disagreement": 0.2,
    "execution": 0.2,
}
DEFAULT_MAX_SIMILARITY = 0.6
_EPS = 1e-12

Span = tuple[int, int]


# --------------------------------------------------------------------------- per-decision scores


def _as_probabilities(probs: np.ndarray) -> np.ndarray:
    """Rows of ``probs`` clipped to [0, 1] and renormalised; shape (n, k) with k ≥ 2."""
    array = np.atleast_2d(np.asarray(probs, dtype=float))
    if array.shape[1] < 2:
        raise ValueError(f"a probability row needs at least 2 classes, got shape {array.shape}")
    array = np.clip(array, 0.0, 1.0)
    totals = array.sum(axis=1, keepdims=True)
    return np.where(totals > 0, array / np.maximum(totals, _EPS), 1.0 / array.shape[1])


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """``(1 - max p) / (1 - 1/k)`` per row: 0 when certain, 1 when uniform."""
    p = _as_probabilities(probs)
    k = p.shape[1]
    return np.clip((1.0 - p.max(axis=1)) / (1.0 - 1.0 / k), 0.0, 1.0)


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row."""
    p = np.sort(_as_probabilities(probs), axis=1)
    return np.clip(1.0 - (p[:, -1] - p[:, -2]), 0.0, 1.0)


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy per row divided by ``log k``."""
    p = _as_probabilities(probs)
    k = p.shape[1]
    entropy = -(p * np.log(np.maximum(p, _EPS))).sum(axis=1)
    return np.clip(entropy / math.log(k), 0.0, 1.0)


def binary_distribution(confidences: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scalar confidences c → rows ``[c, 1 - c]`` (a region score is a binary relevance)."""
    c = np.clip(np.asarray(confidences, dtype=float).reshape(-1), 0.0, 1.0)
    return np.stack([c, 1.0 - c], axis=1)


def span_coverage_disagreement(regions: Sequence[Span], operands: Sequence[Span]) -> float:
    """Fraction of operand matches that no region covers (NaN without operands).

    IAF finds the context an operation reads, operand matching finds its numbers; a clause-
    expanded region should contain the numbers its operation uses. Operands outside every
    region mean the two signals disagree about where the operation is.
    """
    if len(operands) == 0:
        return float("nan")
    outside = sum(
        1 for o_start, o_end in operands if not any(r_start <= o_start and o_end <= r_end for r_start, r_end in regions)
    )
    return outside / len(operands)


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """What the selector knows about one problem (assembled by the DB shell)."""

    problem_id: int
    text: str
    decisions: tuple[np.ndarray, ...] = ()  # one probability vector (k ≥ 2) per model decision
    regions: tuple[Span, ...] = ()  # attention-derived regions (clause / IAF / model)
    operands: tuple[Span, ...] = ()  # operand matches in the problem text
    execution_failed: bool | None = None  # teacher-derived program failed validation; None = no program
    execution_error: str | None = None


@dataclass(frozen=True)
class Scored:
    """A candidate's uncertainty components, priority under a strategy, and why."""

    problem_id: int
    components: dict[str, float]
    priority: float
    reason: str


def _decision_matrix(decisions: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [_as_probabilities(np.asarray(d, dtype=float).reshape(1, -1)) for d in decisions]


def component_scores(candidate: Candidate) -> dict[str, float]:
    """Uncertainty components of one candidate; NaN where a signal is missing.

    Decision-level scores are aggregated by max: a problem is as uncertain as its least
    certain decision.
    """
    rows = _decision_matrix(candidate.decisions)
    scores: dict[str, float] = {}
    for name, fn in (
        ("least_confidence", least_confidence),
        ("margin", margin_uncertainty),
        ("entropy", normalized_entropy),
    ):
        scores[name] = max((float(fn(row)[0]) for row in rows), default=float("nan"))
    scores["disagreement"] = span_coverage_disagreement(candidate.regions, candidate.operands)
    scores["execution"] = (
        float("nan") if candidate.execution_failed is None else (1.0 if candidate.execution_failed else 0.0)
    )
    return scores


def composite_priority(components: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """Weighted mean of the available (non-NaN) components; 1.0 if nothing is known."""
    weights = weights or DEFAULT_WEIGHTS
    known = [(weights.get(name, 0.0), value) for name, value in components.items() if not math.isnan(value)]
    total = sum(w for w, _ in known)
    if total <= 0:
        return 1.0
    return sum(w * v for w, v in known) / total


def _describe(candidate: Candidate, components: dict[str, float], strategy: str, priority: float) -> str:
    parts = [f"{strategy}={priority:.3f}"]
    if candidate.decisions:
        parts.append(
            f"entropy={components['entropy']:.2f} margin={components['margin']:.2f} "
            f"lc={components['least_confidence']:.2f} over {len(candidate.decisions)} decisions"
        )
    else:
        parts.append("no model decisions")
    if not math.isnan(components["disagreement"]):
        outside = round(components["disagreement"] * len(candidate.operands))
        parts.append(f"{outside}/{len(candidate.operands)} operands outside regions")
    if candidate.execution_failed:
        parts.append(f"execution failed ({candidate.execution_error or 'wrong answer'})")
    elif candidate.execution_failed is False:
        parts.append("execution ok")
    return "; ".join(parts)


def _random_priority(problem_id: int, seed: int) -> float:
    """A reproducible uniform number per (seed, problem)."""
    digest = hashlib.blake2b(f"{seed}:{problem_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def score_candidates(
    candidates: Sequence[Candidate],
    strategy: str = DEFAULT_STRATEGY,
    weights: dict[str, float] | None = None,
    seed: int = 0,
) -> list[Scored]:
    """Score every candidate under ``strategy`` (see :data:`STRATEGIES`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    scored: list[Scored] = []
    for candidate in candidates:
        components = component_scores(candidate)
        if strategy == "composite":
            priority = composite_priority(components, weights)
        elif strategy == "random":
            priority = _random_priority(candidate.problem_id, seed)
        else:
            value = components[strategy]
            priority = 0.0 if math.isnan(value) else value
        scored.append(
            Scored(candidate.problem_id, components, priority, _describe(candidate, components, strategy, priority))
        )
    return scored


# --------------------------------------------------------------------------- diversity


_WORD = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*|[^\sa-z\d]")


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """Number-blind word n-grams: ``"Tom has 5 apples"`` and ``"Tom has 7 apples"`` match."""
    tokens = ["#" if t[0].isdigit() else t for t in _WORD.findall(text.lower())]
    if len(tokens) < n:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class BatchChoice:
    """Indices chosen (in priority order) and near-duplicates skipped, with their twin."""

    chosen: list[int]
    skipped_duplicates: dict[int, int] = field(default_factory=dict)  # skipped index → chosen index


def select_diverse(
    priorities: Sequence[float] | np.ndarray,
    texts: Sequence[str],
    budget: int,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    tie_break: Sequence[int] | None = None,
) -> BatchChoice:
    """Greedy: highest priority first, skipping anything ≥ ``max_similarity`` to a chosen text.

    Ties are broken by ``tie_break`` (e.g. problem ids, ascending), else by index.
    """
    if budget < 0:
        raise ValueError(f"budget must be ≥ 0, got {budget}")
    values = np.asarray(priorities, dtype=float)
    if values.shape[0] != len(texts):
        raise ValueError(f"{values.shape[0]} priorities for {len(texts)} texts")
    secondary = np.asarray(tie_break if tie_break is not None else np.arange(len(texts)))
    order = np.lexsort((secondary, -values))
    chosen: list[int] = []
    chosen_shingles: list[frozenset[str]] = []
    skipped: dict[int, int] = {}
    for index in order:
        if len(chosen) >= budget:
            break
        sh = shingles(texts[index])
        twin = next((c for c, csh in zip(chosen, chosen_shingles) if jaccard(sh, csh) >= max_similarity), None)
        if twin is not None:
            skipped[int(index)] = twin
            continue
        chosen.append(int(index))
        chosen_shingles.append(sh)
    return BatchChoice(chosen, skipped)


def select_batch(
    candidates: Sequence[Candidate],
    budget: int,
    strategy: str = DEFAULT_STRATEGY,
    weights: dict[str, float] | None = None,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    seed: int = 0,
) -> list[Scored]:
    """Score, then pick a diverse batch of at most ``budget``, most uncertain first."""
    scored = score_candidates(candidates, strategy, weights, seed)
    choice = select_diverse(
        [s.priority for s in scored],
        [c.text for c in candidates],
        budget,
        max_similarity,
        tie_break=[c.problem_id for c in candidates],
    )
    return [scored[i] for i in choice.chosen]


def task_score(priority: float) -> float:
    """Label Studio's task score: a confidence, so the most uncertain task sorts first (lowest)."""
    return float(np.clip(1.0 - priority, 0.0, 1.0))
