"""A learned candidate selector: re-ranks the search's answer groups (pure, gold-blind).

The probability-weighted vote (``app.inference.search``) ranks the right answer too low on many
problems where it *is* among the executed candidates. The selector scores every answer group
``g`` of one problem by ``w · (x_g − mean) / std`` over the gold-blind features of
:func:`group_features` (the vote's mass and share, its best path's probability, how many paths
agree, the best path's length, how it uses the problem's number mentions, C1's agreement, the
answer's magnitude and integer-ness …) and the highest score wins.

The weights are a fitted artifact (:func:`fit_selector`, a conditional-logit / listwise
softmax model fitted on TRAIN-split candidates labelled with gold — training data — and tuned
on DEV), saved as JSON with its sha256 (:func:`save_selector`) and loaded with the models;
inference only ever sees the weights. The pipeline's ``model_version`` names the selector by a
suffix ``.S<sha256[:8]>`` (:func:`versioned`), which parsers of specialist versions ignore.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit  # σ, without overflow for large |x|

from app.inference.units import unit_checks

__all__ = ["FEATURES", "Selector", "RankingInputs", "group_features", "fit_selector", "save_selector",
           "load_selector", "selector_path", "versioned", "rank_accuracy"]

FEATURES: tuple[str, ...] = (
    "log_mass", "share", "log_best", "log_paths", "path_share", "vote_rank0", "steps", "steps_p",
    "mentions_used", "mentions_reused", "coverage_gap", "constants", "is_integer", "is_negative",
    "log_magnitude", "is_mention", "two_decimals", "log_op_p", "log_operand_p", "log_stop_p", "log_factors",
    "unused_mentions", "steps_per_mention", "dead_steps", "log_best_rank", "div_share", "sub_share",
    "max_reuse", "below_mentions", "verifier_best", "verifier_max", "verifier_top",
    "log_min_operand_p", "log_min_op_p", "log_best_per_decision", "round_ten", "unit_fraction", "above_mentions",
    "last_add", "last_sub", "last_mul", "last_div",
    "verifier_vote", "verifier_vote_share", "verifier_mass", "pair_gap", "read_inversions",
    "unit_conflicts", "unit_match", "unit_mismatch", "unit_min_conflicts", "unit_any_match",
)
"""Per answer group (all gold-blind): log Σ path scores; its share of the total; log of its best
path's score; log(1 + paths); paths / all executed paths; 1 for the vote's winner; the best
path's number of steps and C6's probability of that count; fraction of the problem's number
mentions the best path uses; operand uses of an already used mention / operands; mean C1
relevance of used minus unused mentions; constants / operands; the answer is an integer,
negative; log10(1 + |answer|); the answer equals a number written in the problem; the answer
has at most two decimals; then the best path's score taken apart — Σ log of C2's op
probabilities, Σ log of C3's operand probabilities, log of C6's stop/continue product, and the
log of everything else (C1 coverage, C5 edges, dead-step and duplicate factors, C3's list end,
C6's answer type); the number of mentions it leaves unused; steps per mention; steps whose
result no later step reads (besides the answer); log(1 + rank of its best path among all
executed paths); shares of DIV and SUB steps; the most times one mention is read; the answer
is below every mention's value (positive answers only); the program verifier's logit for the
best path and the highest among the group's paths, and whether the group holds the path the
verifier rates highest (all 0 without a verifier, :mod:`training.verifier`); the best path's
weakest operand and op probabilities (logs) and its log score per decision (ops, operands and
the stop); the answer is a multiple of 10, lies strictly between 0 and 1, exceeds every
mention's value; the best path's last op (one-hot ADD, SUB, MUL, DIV); the verifier-weighted
vote — log Σ over the group's paths of σ(verifier logit), that sum's share over all groups, and
log Σ path score · σ(logit) (all 0 without a verifier); how far apart in the text the numbers
one step combines are (mean over steps reading ≥ 2 mentions of the largest minus the smallest
mention index: "three toys at $10 each" pairs neighbours), and the share of backward moves when
the mentions are listed in the order the program first reads them (word problems are mostly
solved in reading order); then the units (:mod:`app.inference.units`, all 0 without them): the
best path's ADD/SUB steps joining different units, whether its answer's unit is the one the
question asks for or a different known one, and over the group's five best paths the fewest
conflicts and whether any answers in the asked unit."""


@dataclass
class RankingInputs:
    """What the selector sees of one problem's search: the vote's answer groups (vote order),
    the number of executed paths, the mentions' literal values and C1's relevance per mention.
    Kept in memory (not stored) so selector features can be recomputed when they change."""

    groups: list[Any]
    n_executed: int
    mention_values: list[Fraction | None]
    relevance: list[float]
    units: Any = None  # app.inference.units.ProblemUnits (None: unit features are 0)

    def features(self) -> np.ndarray:
        return group_features(self.groups, self.n_executed, self.mention_values, self.relevance, self.units)


@dataclass(frozen=True)
class Selector:
    """Fitted weights over :data:`FEATURES` (``mean``/``std`` standardise, shape (F,) each)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    sha256: str = ""
    verifier_sha256: str = ""  # the program verifier whose logits it reads ("" for none)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(G, F) features → (G,) scores (higher is better); a selector fitted on the first
        F' < F features (an older feature list) reads those."""
        z = (np.asarray(x, dtype=float)[:, : len(self.weights)] - np.asarray(self.mean)) / np.asarray(self.std)
        return z @ np.asarray(self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": list(self.mean), "std": list(self.std),
                "weights": list(self.weights), "verifier_sha256": self.verifier_sha256}


def _as_fraction(value: Any) -> Fraction | None:
    if isinstance(value, Fraction):
        return value
    try:
        import sympy

        if isinstance(value, sympy.Rational):
            return Fraction(int(value.p), int(value.q))
    except Exception:  # pragma: no cover - sympy always importable here
        pass
    return None


def group_features(groups: Sequence[Any], n_executed: int, mention_values: Sequence[Fraction | None],
                   relevance: Sequence[float], units: Any = None) -> np.ndarray:
    """(G, F) features of the answer groups of one problem, in the vote's order.

    ``groups`` are :class:`app.inference.search.AnswerGroup` (mass, value, members sorted best
    first, each with ``.path`` and ``.score``); ``mention_values`` the problem's number mentions'
    literal values (None when not rational); ``relevance`` C1's per-mention relevance; ``units``
    the problem's :class:`app.inference.units.ProblemUnits` (None: unit features are 0).
    """
    total = sum(g.mass for g in groups) or 1.0
    n_mentions = len(mention_values)
    literal = {v for v in mention_values if v is not None}
    smallest = min(literal) if literal else None
    largest = max(literal) if literal else None
    path_scores = sorted(m.score for g in groups for m in g.members)  # ascending, for bisect
    verified = [[float(m.verified) for m in g.members if getattr(m, "verified", None) is not None] for g in groups]
    top_verified = max((max(v) for v in verified if v), default=None)
    votes = [float(np.sum(expit(np.asarray(v)))) if v else 0.0 for v in verified]  # Σ σ(logit) per group
    total_votes = sum(votes) or 1.0
    rows = []
    for rank, group in enumerate(groups):
        best = group.members[0]
        path = best.path
        mentions = [int(c[1]) for step in path.steps for c in step.operands if c[0] == "problem"]
        operands = sum(len(step.operands) for step in path.steps) or 1
        constants = sum(1 for step in path.steps for c in step.operands if c[0] == "constant")
        used = set(mentions)
        if relevance is not None and len(relevance) and n_mentions:
            inside = [relevance[i] for i in used if i < len(relevance)]
            outside = [relevance[i] for i in range(min(n_mentions, len(relevance))) if i not in used]
            gap = (float(np.mean(inside)) if inside else 0.0) - (float(np.mean(outside)) if outside else 0.0)
        else:
            gap = 0.0
        value = _as_fraction(group.value)
        if value is not None:
            try:
                magnitude = math.log10(1.0 + abs(float(value)))
            except OverflowError:  # beyond float range: digits of |numerator| − digits of denominator
                magnitude = float(len(str(abs(value.numerator))) - len(str(value.denominator)))
            is_integer = float(value.denominator == 1)
            negative = float(value < 0)
            two_decimals = float((value * 100).denominator == 1)
        else:
            try:
                magnitude = math.log10(1.0 + abs(complex(group.value.evalf())))
            except Exception:
                magnitude = 0.0
            is_integer, negative, two_decimals = 0.0, 0.0, 0.0
        n_steps = len(path.steps) or 1
        op_ps = [step.op_p for step in path.steps]
        operand_ps = [p for step in path.steps for p in step.operand_ps]
        log_op = sum(math.log(max(p, 1e-30)) for p in op_ps)
        log_operand = sum(math.log(max(p, 1e-30)) for p in operand_ps)
        log_stop = math.log(max(path.n_steps_p, 1e-30))
        log_best = math.log(max(best.score, 1e-30))
        consumed = {int(c[1]) for step in path.steps for c in step.operands if c[0] == "step"}
        ops = [step.op for step in path.steps]
        best_rank = len(path_scores) - bisect.bisect_right(path_scores, best.score)  # paths scoring higher
        below = float(value is not None and smallest is not None and 0 < value < smallest)
        decisions = len(op_ps) + len(operand_ps) + 1  # + the stop
        last = ops[-1] if ops else ""
        rows.append([
            math.log(max(group.mass, 1e-30)), group.mass / total, log_best,
            math.log1p(len(group.members)), len(group.members) / max(1, n_executed), float(rank == 0),
            float(path.n_steps), float(path.n_steps_p),
            len(used) / n_mentions if n_mentions else 0.0, (len(mentions) - len(used)) / operands, gap,
            constants / operands, is_integer, negative, min(magnitude, 30.0),
            float(value is not None and value in literal), two_decimals,
            log_op, log_operand, log_stop, log_best - log_op - log_operand - log_stop,
            float(n_mentions - len(used)), len(path.steps) / max(1, n_mentions),
            float(len(set(range(len(path.steps) - 1)) - consumed)), math.log1p(best_rank),
            ops.count("DIV") / n_steps, ops.count("SUB") / n_steps,
            float(max((mentions.count(i) for i in used), default=0)), below,
            float(getattr(best, "verified", None) or 0.0), max(verified[rank], default=0.0),
            float(top_verified is not None and bool(verified[rank]) and max(verified[rank]) == top_verified),
            math.log(max(min(operand_ps, default=1.0), 1e-30)), math.log(max(min(op_ps, default=1.0), 1e-30)),
            log_best / decisions,
            float(value is not None and value.denominator == 1 and value % 10 == 0),
            float(value is not None and 0 < value < 1),
            float(value is not None and largest is not None and value > largest),
            float(last == "ADD"), float(last == "SUB"), float(last == "MUL"), float(last == "DIV"),
            math.log(votes[rank]) if votes[rank] > 0 else 0.0, votes[rank] / total_votes,
            _weighted_mass(group.members) if verified[rank] else 0.0,
            *_reading_order(path.steps),
            *_unit_features(group.members, units),
        ])
    return np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURES))


def _reading_order(steps: Sequence[Any]) -> tuple[float, float]:
    """(mean index gap of the mentions one step combines, share of backward moves in the order
    the program first reads mentions) of one path's steps; indices are mention order in the text."""
    gaps, first_reads = [], []
    for step in steps:
        read = [int(c[1]) for c in step.operands if c[0] == "problem"]
        if len(set(read)) >= 2:
            gaps.append(max(read) - min(read))
        for i in read:
            if i not in first_reads:
                first_reads.append(i)
    backward = sum(b < a for a, b in zip(first_reads, first_reads[1:]))
    return (float(np.mean(gaps)) if gaps else 0.0), backward / max(1, len(first_reads) - 1)


def _unit_features(members: Sequence[Any], units: Any) -> tuple[float, ...]:
    """(conflicts, answer in the asked unit, answer in another known unit) of the best path, then
    the fewest conflicts and any asked-unit answer among the group's five best paths."""
    if units is None:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    checks = [unit_checks(m.path.steps, units) for m in members[:5]]
    best = checks[0]
    return best[0], best[1], best[2], min(c[0] for c in checks), max(c[1] for c in checks)


def _weighted_mass(members: Sequence[Any]) -> float:
    """log Σ path score · σ(verifier logit) over a group's verified paths."""
    mass = sum(m.score * float(expit(np.asarray(m.verified))) for m in members
               if getattr(m, "verified", None) is not None)
    return math.log(max(mass, 1e-30))


# --------------------------------------------------------------------------- fitting (training data)


def _objective(w: np.ndarray, problems: list[tuple[np.ndarray, np.ndarray]], l2: float) -> tuple[float, np.ndarray]:
    loss, grad = l2 * float(w @ w), 2.0 * l2 * w
    for z, correct in problems:
        s = z @ w
        s = s - s.max()
        p = np.exp(s)
        p /= p.sum()
        pc = p[correct]
        mass = pc.sum()
        loss -= math.log(max(mass, 1e-300))
        # d(-log Σ_c p_c)/dw = E_p[z] − E_{p|correct}[z]
        grad += p @ z - (pc @ z[correct]) / max(mass, 1e-300)
    n = max(1, len(problems))
    return loss / n, grad / n


def fit_selector(problems: Sequence[tuple[np.ndarray, Sequence[bool]]], l2: float = 1e-2) -> Selector:
    """Fit a listwise (conditional-logit) selector.

    ``problems``: per problem its (G, F) features and per group whether its answer is correct
    (training labels). Problems without a correct group or with a single group carry no ranking
    signal and are skipped. ``l2`` is the ridge penalty on the standardised weights.
    """
    from scipy.optimize import minimize

    usable = [(np.asarray(x, dtype=float), np.asarray(y, dtype=bool)) for x, y in problems
              if len(y) > 1 and any(y) and not all(y)]
    if not usable:
        raise ValueError("no problem with both a correct and a wrong candidate to fit the selector on")
    stacked = np.vstack([x for x, _ in usable])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std[std < 1e-9] = 1.0
    standardised = [((x - mean) / std, y) for x, y in usable]
    start = np.zeros(stacked.shape[1])
    start[FEATURES.index("log_mass")] = 1.0 if stacked.shape[1] == len(FEATURES) else 0.0
    result = minimize(_objective, start, args=(standardised, l2), jac=True, method="L-BFGS-B",
                      options={"maxiter": 500})
    return Selector(FEATURES[: stacked.shape[1]], tuple(float(v) for v in mean), tuple(float(v) for v in std),
                    tuple(float(v) for v in result.x))


def rank_accuracy(selector: Selector | None, problems: Sequence[tuple[np.ndarray, Sequence[bool]]]) -> float:
    """Share of problems whose top-ranked group is correct (None: the vote's order)."""
    hits = 0
    for x, y in problems:
        if len(y) == 0:
            continue
        top = 0 if selector is None else int(np.argmax(selector.scores(x)))
        hits += bool(y[top])
    return hits / max(1, len(problems))


# --------------------------------------------------------------------------- artifact


def selector_path(home: Path | str, specialists_version: str) -> Path:
    """``MYCELIUM_HOME/models/selector/<specialists' model_version>/selector.json``."""
    return Path(home) / "models" / "selector" / specialists_version / "selector.json"


def save_selector(selector: Selector, path: Path, meta: dict[str, Any] | None = None) -> Selector:
    """Write the selector (and provenance ``meta``) as JSON; returns it with its sha256 set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({**selector.to_dict(), "meta": meta or {}}, sort_keys=True, indent=1).encode()
    path.write_bytes(body)
    return Selector(selector.features, selector.mean, selector.std, selector.weights,
                    hashlib.sha256(body).hexdigest(), selector.verifier_sha256)


def load_selector(path: Path) -> Selector | None:
    """The selector stored at ``path`` (None when there is none); its sha256 is of the file's bytes."""
    if not path.is_file():
        return None
    body = path.read_bytes()
    data = json.loads(body)
    if tuple(data["features"]) != FEATURES[: len(data["features"])]:
        raise ValueError(f"selector {path}: features {data['features']} do not match this code's")
    return Selector(tuple(data["features"]), tuple(data["mean"]), tuple(data["std"]), tuple(data["weights"]),
                    hashlib.sha256(body).hexdigest(), data.get("verifier_sha256", ""))


def versioned(model_version: str, selector: Selector | None) -> str:
    """The pipeline version with the selector's identity: ``C1v2.….C6v2.S1a2b3c4d`` (≤ 64 chars)."""
    if selector is None:
        return model_version
    return f"{model_version}.S{selector.sha256[:8]}"
