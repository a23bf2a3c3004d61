"""Uncertainty scores and diverse batch selection — pure functions on arrays (no DB, no I/O).

Every score is an *uncertainty* in [0, 1] (1 = most in need of a human). A candidate is a
problem with the model outputs we know for it: probability vectors of its decisions (region
relevance, operation class, …), the character spans of its attention-derived regions and of
its operand matches, and whether its teacher-derived program failed execution validation.

With trained specialists the decisions come from their own stored outputs (C2 op distributions
per step, C6 answer type and answer step), plus disagreement among the search's candidate
programs, execution failure of the model's program, "no program could be parsed" (its own
reason, capped per batch so parser gaps do not fill it) and suspected label noise
(:mod:`labeling.noise`: cleanlab on k-fold cross-fitted heads).

The batch is chosen by priority-weighted greedy k-center on MiniLM sentence embeddings
(:func:`select_kcenter`), skipping near-duplicates (cosine ≥ ``max_similarity``). The shingle
functions (:func:`select_diverse`) remain for the text-only bench.
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
COMPONENTS: tuple[str, ...] = (
    "least_confidence", "margin", "entropy", "disagreement", "execution", "no_program", "noise",
)
DEFAULT_WEIGHTS: dict[str, float] = {
    "entropy": 0.3,
    "margin": 0.2,
    "least_confidence": 0.1,
    "disagreement": 0.2,
    "execution": 0.2,
    "no_program": 0.15,
    "noise": 0.25,
}
DEFAULT_MAX_SIMILARITY = 0.9  # cosine similarity of MiniLM embeddings: at or above = near-duplicate
DEFAULT_DIVERSITY_WEIGHT = 0.25  # priority + weight × (cosine distance to the batch so far)
DEFAULT_NO_PROGRAM_SHARE = 0.2  # at most this share of a batch selected only because no program parsed
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
    execution_failed: bool | None = None  # the model's (or teacher's) program failed / was wrong; None = unknown
    execution_error: str | None = None
    candidates_disagree: bool | None = None  # candidate programs of the search disagree (inference_results)
    no_program: bool | None = None  # the model assembled no program at all (kept apart from "wrong")
    noise: float | None = None  # suspected label noise (cleanlab on cross-fitted heads), 1 = flagged
    noise_detail: str | None = None


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
    if candidate.candidates_disagree is not None:
        scores["disagreement"] = 1.0 if candidate.candidates_disagree else 0.0
    else:
        scores["disagreement"] = span_coverage_disagreement(candidate.regions, candidate.operands)
    scores["execution"] = (
        float("nan") if candidate.execution_failed is None else (1.0 if candidate.execution_failed else 0.0)
    )
    scores["no_program"] = float("nan") if candidate.no_program is None else (1.0 if candidate.no_program else 0.0)
    scores["noise"] = float("nan") if candidate.noise is None else float(candidate.noise)
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
    if candidate.candidates_disagree:
        parts.append("candidate programs disagree")
    elif candidate.candidates_disagree is None and not math.isnan(components["disagreement"]):
        outside = round(components["disagreement"] * len(candidate.operands))
        parts.append(f"{outside}/{len(candidate.operands)} operands outside regions")
    if candidate.no_program:
        parts.append("no program could be parsed/assembled")
    if candidate.noise:
        parts.append(f"suspected label noise ({candidate.noise_detail or 'cleanlab'})")
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


def select_kcenter(
    priorities: Sequence[float] | np.ndarray,
    embeddings: np.ndarray,
    budget: int,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    diversity_weight: float = DEFAULT_DIVERSITY_WEIGHT,
    tie_break: Sequence[int] | None = None,
    capped: Sequence[bool] | None = None,
    cap: int | None = None,
) -> BatchChoice:
    """Greedy k-center (coreset) on embeddings, weighted by priority.

    ``embeddings`` (N, D) L2-normalised rows. The first pick is the highest priority; each next
    pick maximises ``priority + diversity_weight × d``, where ``d`` is the cosine distance to the
    nearest already chosen item (the k-center criterion). Items with cosine similarity ≥
    ``max_similarity`` to a chosen one are near-duplicates and skipped. At most ``cap`` items with
    ``capped`` True (e.g. "no program could be parsed") enter the batch.
    """
    if budget < 0:
        raise ValueError(f"budget must be ≥ 0, got {budget}")
    values = np.asarray(priorities, dtype=float)
    n = values.shape[0]
    vectors = np.asarray(embeddings, dtype=float).reshape(n, -1)
    secondary = np.asarray(tie_break if tie_break is not None else np.arange(n), dtype=float)
    flags = np.asarray(capped if capped is not None else np.zeros(n, dtype=bool), dtype=bool)
    alive = np.ones(n, dtype=bool)
    nearest = np.full(n, 1.0)  # distance to the chosen set (1.0 before any choice: neutral)
    chosen: list[int] = []
    skipped: dict[int, int] = {}
    n_capped = 0
    while len(chosen) < budget and alive.any():
        score = np.where(alive, values + diversity_weight * nearest, -np.inf)
        best = np.flatnonzero(score == score.max())
        index = int(best[np.argmin(secondary[best])])
        alive[index] = False
        if cap is not None and flags[index] and n_capped >= cap:
            continue
        chosen.append(index)
        n_capped += int(flags[index])
        similarity = vectors @ vectors[index]
        for dup in np.flatnonzero(alive & (similarity >= max_similarity)):
            skipped[int(dup)] = index
            alive[dup] = False
        nearest = np.minimum(nearest, np.clip(1.0 - similarity, 0.0, 2.0)) if len(chosen) > 1 else np.clip(
            1.0 - similarity, 0.0, 2.0)
    return BatchChoice(chosen, skipped)


def select_batch(
    candidates: Sequence[Candidate],
    budget: int,
    strategy: str = DEFAULT_STRATEGY,
    weights: dict[str, float] | None = None,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    seed: int = 0,
    embeddings: np.ndarray | None = None,
    diversity_weight: float = DEFAULT_DIVERSITY_WEIGHT,
    no_program_share: float = DEFAULT_NO_PROGRAM_SHARE,
) -> list[Scored]:
    """Score, then pick a diverse batch of at most ``budget``, most uncertain first.

    ``embeddings`` (N, D): MiniLM sentence embeddings of the candidates' texts (default: computed
    with :func:`labeling.embeddings.embed_texts`). Problems whose only problem is that no program
    could be parsed fill at most ``no_program_share`` of the batch.
    """
    scored = score_candidates(candidates, strategy, weights, seed)
    if embeddings is None:
        from labeling.embeddings import embed_texts

        embeddings = embed_texts([c.text for c in candidates])
    only_no_program = [
        bool(c.no_program) and not c.execution_failed and not c.candidates_disagree and not c.noise
        for c in candidates
    ]
    choice = select_kcenter(
        [s.priority for s in scored],
        embeddings,
        budget,
        max_similarity,
        diversity_weight if strategy != "random" else 0.0,
        tie_break=[c.problem_id for c in candidates],
        capped=only_no_program,
        cap=max(1, int(no_program_share * budget)) if strategy != "random" else None,
    )
    return [scored[i] for i in choice.chosen]


def task_score(priority: float) -> float:
    """Label Studio's task score: a confidence, so the most uncertain task sorts first (lowest)."""
    return float(np.clip(1.0 - priority, 0.0, 1.0))
