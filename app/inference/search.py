"""The gold-blind search (design §5): specialists propose, the executor decides.

Pure functional core: it reads one :class:`~app.inference.proposals.Proposal` (the specialists'
calibrated distributions for one problem text) and the C3 operand distributions for the
(slot, op) requests it asked for, and returns a :class:`SearchResult`. Nothing here touches the
database, a model or a gold answer.

Algorithm, per problem:

1. **θ-collapse** every decision (:func:`collapse`): the top choice alone when its probability is
   at least ``theta``, else the ``top_k`` most probable. Decisions are whether a partial program
   ends (C6), the operation of each slot (C2; NONE and EQUATION — which needs an equation text
   no specialist writes — excluded), each operand position of each (slot, op) (C3) and the
   answer type (C6).
2. :func:`plan_requests` collapses C2's ops per slot (and C6's static step-count distribution).
3. **Beam over step slots** (:func:`beam`): a path is a prefix of steps with a score, the product
   of the probabilities of its choices (times C5's agreement with its dependency edges,
   ``dependency_weight``, ``dead_step_factor`` per unused step, ``duplicate_factor`` per step
   taking one operand twice, and C1's agreement with the number mentions used,
   ``coverage_weight``). At each slot the whole frontier asks C6 whether it ends here
   (``Specialists.stops``, one padded pass) and C3 for its operands given its prefix
   (``Specialists.operands``, one padded pass); specialists without the prefix-conditioned
   heads fall back to C6's answer-slot distribution and one prefix-free C3 pass
   (:func:`search`). Each new step is executed as the path grows (:func:`step_value`: the
   executor's operations and bounds, rationals done exactly with ``Fraction``; prefixes
   shared), a step that fails ends its path; after each slot only the ``max_paths`` best paths
   are kept.
4. Answers whose type C6's collapsed answer-type set excludes are dropped; the others are
   weighted by C6's probability of their type.
5. **Vote**: equal answers (exact sympy equality, then numeric-then-symbolic equality for
   irrational values) pool their path scores; the heaviest pool wins, its best path is the
   chosen program. The answer's probability is the pool's summed path probability (the model's
   probability mass on that answer within the explored paths; ≤ 1). The chosen program is
   executed again by the safe executor (:func:`app.execution.executor.execute_program`), which
   has the last word (``verify_all`` makes it re-run every candidate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Union

import numpy as np
import sympy

from app.execution.errors import DivisionByZero, ExecutionError, InvalidProgram, NumberTooLarge
from app.execution.executor import execute_program
from app.execution.expression import OP_ARITY
from app.execution.limits import DEFAULT_LIMITS, Limits
from app.execution.operations import evaluate_op, parse_literal
from app.execution.program import Operand, Program, Step, rational_text
from app.inference.units import problem_units
from app.inference.proposals import (
    ANSWER_TYPES, MAX_OPERANDS, MAX_STEPS, Candidate, Chained, OperandRequest, Prefix, PrefixStep, Proposal,
)

__all__ = [
    "SearchConfig", "SearchResult", "Path", "collapse", "plan_requests", "search",
    "value_answer_types", "format_answer_value", "NO_NUMBERS", "NO_PROGRAM", "NO_EXECUTABLE",
    "NO_CONSISTENT", "search_with", "beam", "operand_lists", "path_program", "program_json", "Plan",
    "PlannedStep", "OperandsFn", "StopsFn", "NextOpsFn", "VerifyFn", "static_stops", "path_prefix", "collapse_ops", "operand_value", "step_value", "to_sympy",
]

NONE_OP = "NONE"
NO_NUMBERS = "the problem text has no numbers"
NO_PROGRAM = "the specialists proposed no complete program"
NO_EXECUTABLE = "no candidate program executed"
NO_CONSISTENT = "no executed answer matches the answer type C6 expects"

_OP_SYMBOL = {"ADD": "+", "SUB": "-", "MUL": "*", "DIV": "/", "POW": "^", "MOD": " mod "}


@dataclass(frozen=True)
class SearchConfig:
    """Search knobs. ``theta`` ∈ [0, 1] (0: always collapse to the top choice → one path;
    1: never collapse unless certain → top-k everywhere); ``top_k`` ≥ 1; ``max_paths`` caps the
    beam and the number of executed programs; ``max_operand_lists`` caps operand lists per
    (slot, op); ``dependency_weight`` is the exponent of C5's factor (0 ignores C5);
    ``dead_step_factor`` multiplies a complete path for each step other than the answer step
    whose result no later step uses (≈ 8% of GSM8K reference programs have one; 1 disables);
    ``duplicate_factor`` multiplies an ADD/MUL/… step that takes the same operand twice (SUB and
    DIV steps doing so — always 0 or 1 — are dropped); ``coverage_weight`` is the exponent of
    C1's factor Π over number mentions of (relevance if the program uses it else 1 − relevance);
    ``vote`` pools a group's path scores (``"sum"``) or takes its best (``"max"``);
    ``verify_all`` re-executes every candidate with the safe executor (slow; the winner always is);
    ``selector`` (a fitted :class:`app.inference.selector.Selector`, gold-blind weights) re-ranks
    the answer groups after the vote (None: the vote's order); ``stop_theta`` is the θ of C6's
    stop/continue decision in the live beam (None: ``theta``; 1.0 keeps both branches always)."""

    theta: float = 0.85
    top_k: int = 3
    max_paths: int = 100
    max_operand_lists: int = 12
    dependency_weight: float = 1.0
    dead_step_factor: float = 0.1
    duplicate_factor: float = 0.1
    coverage_weight: float = 1.0
    vote: str = "sum"
    verify_all: bool = False
    limits: Limits = DEFAULT_LIMITS
    selector: Any = None  # app.inference.selector.Selector: re-ranks the vote's answer groups
    stop_theta: float | None = None

    def __post_init__(self) -> None:
        for name in ("theta", "stop_theta"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value}")
        if self.top_k < 1 or self.max_paths < 1 or self.max_operand_lists < 1:
            raise ValueError("top_k, max_paths and max_operand_lists must be ≥ 1")
        if self.vote not in ("sum", "max"):
            raise ValueError(f"vote must be 'sum' or 'max', not {self.vote!r}")


def collapse(distribution: Sequence[tuple[Any, float]], theta: float, top_k: int) -> list[tuple[Any, float]]:
    """θ-collapse one decision: ``[(top, p)]`` when ``p ≥ theta``, else the ``top_k`` best.

    ``distribution`` is ``(choice, probability)`` pairs in any order; ties keep input order.
    Zero-probability choices are never kept (unless nothing else exists).
    """
    ranked = sorted(distribution, key=lambda item: -item[1])
    if not ranked:
        return []
    if ranked[0][1] >= theta:
        return ranked[:1]
    kept = [item for item in ranked[:top_k] if item[1] > 0.0]
    return kept or ranked[:1]


@dataclass(frozen=True)
class PlannedStep:
    """One step of a path: slot's op, its operand candidates and their probabilities."""

    op: str
    op_p: float
    operands: tuple[Candidate, ...]
    operand_ps: tuple[float, ...]


@dataclass(frozen=True)
class Path:
    """A candidate program: ``steps`` filled, ``values`` their executed results (``Fraction`` for
    rationals, else a sympy number); ``n_steps`` is 0 while the path is open and its length once
    it ended; ``n_steps_p`` the product of its stop/continue decisions (C6)."""

    n_steps: int
    n_steps_p: float
    steps: tuple[PlannedStep, ...]
    score: float
    values: tuple = ()

    @property
    def complete(self) -> bool:
        return self.n_steps > 0 and len(self.steps) == self.n_steps


@dataclass
class Plan:
    """The collapsed decisions of one problem before C3: step counts, ops per slot, requests."""

    step_counts: list[tuple[int, float]]  # (n_steps, p)
    slot_ops: list[list[tuple[str, float]]]  # per slot k: (op, p) kept
    requests: list[OperandRequest]


def collapse_ops(distribution: dict[str, float], config: SearchConfig) -> list[tuple[str, float]]:
    """θ-collapse one op decision over the executable ops (NONE and EQUATION removed, the rest
    renormalised); ``[]`` when they carry no mass."""
    real = {op: float(p) for op, p in distribution.items() if op != NONE_OP and op in OP_ARITY and op != "EQUATION"}
    mass = sum(real.values())
    if mass <= 0.0:
        return []
    return collapse([(op, p / mass) for op, p in real.items()], config.theta, config.top_k)


def plan_requests(proposal: Proposal, config: SearchConfig = SearchConfig(), slots: int | None = None) -> Plan:
    """Collapse C6's step count and C2's ops; list every reachable (slot, op) for one C3 pass.

    ``slots``: plan C2's ops for this many slots (default: up to the largest kept step count).
    """
    answer_probs = np.asarray(proposal.answer_step_probs, dtype=float)
    step_counts = [(int(slot) + 1, p) for slot, p in
                   collapse(list(enumerate(answer_probs.tolist())), config.theta, config.top_k)]
    max_steps = slots if slots is not None else max((n for n, _ in step_counts), default=0)
    op_probs = np.asarray(proposal.op_probs, dtype=float)
    slot_ops = [collapse_ops(dict(zip(proposal.ops, (op_probs[slot] if slot < len(op_probs) else []))), config)
                for slot in range(max_steps)]
    requests = [OperandRequest(slot, op) for slot in range(max_steps) for op, _ in slot_ops[slot]]
    return Plan(step_counts, slot_ops, requests)


def _valid_candidate(candidate: Candidate, slot: int, n_mentions: int) -> bool:
    kind = candidate[0] if candidate else None
    if kind == "problem":
        return len(candidate) == 3 and 0 <= int(candidate[1]) < n_mentions and candidate[2] in (
            "literal", "reciprocal", "percent")
    if kind == "step":
        return 0 <= int(candidate[1]) < slot
    if kind == "constant":
        return _valid_literal(str(candidate[1]))
    return kind == "end"


@lru_cache(maxsize=4096)
def _valid_literal(text: str) -> bool:
    try:
        parse_literal(text)
    except ExecutionError:
        return False
    return True


def operand_lists(positions: Sequence[dict[Candidate, float] | Chained], slot: int, op: str, n_mentions: int,
                  config: SearchConfig) -> list[tuple[tuple[Candidate, ...], tuple[float, ...], float]]:
    """Operand lists of one (slot, op) from C3's per-position distributions.

    Each position is θ-collapsed (invalid candidates — a later slot, a missing mention — removed
    first); a :class:`~app.inference.proposals.Chained` position is read after the candidate the
    list took at the position before. A list ends at ``("end",)`` or after :data:`MAX_OPERANDS`
    positions and must fit the op's arity. Returns ``(operands, per-operand p, score)`` best
    first, at most ``max_operand_lists``; the score includes the closing ``end``'s probability.
    """
    low, high = OP_ARITY[op]
    positions = positions[:MAX_OPERANDS]
    kept_cache: dict[tuple[int, Candidate | None], list[tuple[Candidate, float]]] = {}

    def kept(position: int, previous: Candidate | None) -> list[tuple[Candidate, float]]:
        entry = positions[position]
        key = (position, previous if isinstance(entry, Chained) else None)
        if key not in kept_cache:
            distribution = entry.given(previous) if isinstance(entry, Chained) else entry
            valid: list[tuple[Candidate, float]] = []  # the top_k valid candidates, best first
            for candidate, p in sorted(distribution.items(), key=lambda item: -item[1]):
                if _valid_candidate(tuple(candidate), slot, n_mentions):
                    valid.append((tuple(candidate), float(p)))
                    if len(valid) >= config.top_k:
                        break
            kept_cache[key] = collapse(valid, config.theta, config.top_k)
        return kept_cache[key]

    results: list[tuple[tuple[Candidate, ...], tuple[float, ...], float]] = []

    def extend(position: int, operands: tuple, ps: tuple, score: float) -> None:
        if position == len(positions):
            if low <= len(operands) and (high is None or len(operands) <= high):
                results.append((operands, ps, score))
            return
        for candidate, p in kept(position, operands[-1] if operands else None):
            if candidate[0] == "end":
                if low <= len(operands) and (high is None or len(operands) <= high):
                    results.append((operands, ps, score * p))
                continue
            if high is not None and len(operands) >= high:
                continue
            extend(position + 1, operands + (candidate,), ps + (p,), score * p)

    extend(0, (), (), 1.0)
    if op in ("SUB", "DIV"):
        results = [item for item in results if len(set(item[0])) == len(item[0])]
    elif config.duplicate_factor != 1.0:
        results = [item if len(set(item[0])) == len(item[0]) else (item[0], item[1], item[2] * config.duplicate_factor)
                   for item in results]
    results.sort(key=lambda item: -item[2])
    return results[: config.max_operand_lists]


def _dependency_factor(depends: np.ndarray, slot: int, used: frozenset[int], weight: float) -> float:
    """C5's agreement with the edges step ``slot`` draws from the earlier steps it reads (``used``):
    Π_i p[i, slot] or 1 − p[i, slot]."""
    if weight == 0.0 or slot == 0:
        return 1.0
    factor = 1.0
    for earlier in range(slot):
        p = float(depends[earlier, slot]) if earlier < depends.shape[0] and slot < depends.shape[1] else 0.5
        p = min(max(p, 1e-6), 1.0 - 1e-6)
        factor *= p if earlier in used else 1.0 - p
    return factor ** weight


OperandsFn = Callable[[Sequence[OperandRequest]], list[list[dict[Candidate, float] | Chained]]]
"""C3: per request, one candidate distribution per operand position (or a :class:`Chained` one)."""
StopsFn = Callable[[Sequence[Prefix]], Sequence[float]]
"""Per partial program (≥ 1 step), P(the program ends after its last step)."""
NextOpsFn = Callable[[Sequence[Prefix]], Sequence[dict[str, float]]]
"""Per partial program, P(op of its next step) by op name."""
VerifyFn = Callable[[Sequence[Path]], Sequence[float] | None]
"""Per complete, executed program, the program verifier's logit that its answer is right (None:
no verifier)."""


def static_stops(step_counts: Sequence[tuple[int, float]]) -> StopsFn:
    """The stop probabilities a fixed step-count distribution implies (C6's answer slot, already
    θ-collapsed): after k steps, P(n = k) / P(n ≥ k) over the kept counts — so a path that stops
    at n steps carries exactly P(n)."""
    mass = {n: p for n, p in step_counts}

    def stops(prefixes: Sequence[Prefix]) -> list[float]:
        out = []
        for prefix in prefixes:
            k = len(prefix)
            rest = sum(p for n, p in mass.items() if n >= k)
            out.append(mass.get(k, 0.0) / rest if rest > 0 else 1.0)
        return out

    return stops


def path_prefix(path: Path) -> Prefix:
    """The contract's view of a partial program (ops and operand candidates per slot)."""
    return tuple(PrefixStep(step.op, step.operands) for step in path.steps)


def beam(plan: Plan, operands_fn: OperandsFn, stops_fn: StopsFn, depends: np.ndarray, n_mentions: int,
         config: SearchConfig, leaf: Callable[[Candidate], Value] | None = None,
         mention_relevance: Sequence[float] = (), collapse_stops: bool = True,
         ops_fn: NextOpsFn | None = None) -> tuple[list[Path], int]:
    """Complete paths, best first (at most ``max_paths``), by a beam over step slots.

    Per slot: every open path of ≥ 1 step first decides whether it ends (``stops_fn``, one call
    for the whole frontier; θ-collapsed unless ``collapse_stops`` is False), then picks each
    path's ops (``ops_fn``, C2 given the prefix, one call; without it the plan's ops of the
    slot), then ``operands_fn`` (C3) answers every (path, op) request of the slot in one call,
    each request carrying its path's prefix; only the ``max_paths`` best extensions are kept.
    With ``leaf`` (a problem/constant candidate's value) every new step is executed as the path
    grows (:func:`step_value`, prefixes shared) and a step that fails ends its path there. A path
    still open after the last planned slot ends there. Returns ``(paths, number of extensions
    that failed to execute)``.
    """
    frontier = [Path(0, 1.0, (), 1.0)]
    stop_theta = config.theta if config.stop_theta is None else config.stop_theta
    finished: list[Path] = []
    failed = 0
    coverage: dict[frozenset[int], float] = {}
    dependency: dict[tuple[int, frozenset[int]], float] = {}  # (slot, earlier steps read) → C5 factor

    def finish(path: Path, p_stop: float) -> Path:
        score = path.score * p_stop
        slots = len(path.steps)
        dead = len(frozenset(range(slots - 1)) - _used_slots(path))
        if dead and config.dead_step_factor != 1.0:
            score *= config.dead_step_factor ** dead
        if config.coverage_weight and len(mention_relevance):
            covered = _used_mentions(path)
            if covered not in coverage:
                coverage[covered] = _coverage(mention_relevance, covered) ** config.coverage_weight
            score *= coverage[covered]
        return Path(slots, path.n_steps_p * p_stop, path.steps, score, path.values)

    for slot, slot_ops in enumerate(plan.slot_ops):
        if slot > 0 and frontier:
            stay: list[Path] = []
            for path, p_stop in zip(frontier, stops_fn([path_prefix(path) for path in frontier])):
                p_stop = min(max(float(p_stop), 0.0), 1.0)
                choices = [("stop", p_stop), ("go", 1.0 - p_stop)]
                for choice, p in (collapse(choices, stop_theta, 2) if collapse_stops else choices):
                    if p <= 0.0:
                        continue
                    if choice == "stop":
                        finished.append(finish(path, p))
                    else:
                        stay.append(Path(0, path.n_steps_p * p, path.steps, path.score * p, path.values))
            frontier = stay
        if not frontier:
            break
        prefixes = [path_prefix(path) for path in frontier]
        path_ops = ([collapse_ops(row, config) for row in ops_fn(prefixes)] if ops_fn is not None
                    else [slot_ops] * len(frontier))
        requests = [OperandRequest(slot, op, prefix) for prefix, ops in zip(prefixes, path_ops) for op, _ in ops]
        if not requests:
            break
        answers = iter(operands_fn(requests))
        grown: list[tuple[float, Path, PlannedStep]] = []
        for path, ops in zip(frontier, path_ops):
            for op, op_p in ops:
                for operands, ps, score in operand_lists(next(answers), slot, op, n_mentions, config):
                    used = frozenset(int(c[1]) for c in operands if c[0] == "step")
                    if (slot, used) not in dependency:
                        dependency[slot, used] = _dependency_factor(depends, slot, used, config.dependency_weight)
                    factor = dependency[slot, used]
                    grown.append((path.score * op_p * score * factor, path, PlannedStep(op, op_p, operands, ps)))
        grown.sort(key=lambda item: -item[0])
        kept: list[Path] = []
        for score, path, step in grown:
            if len(kept) >= config.max_paths:
                break
            values = path.values
            if leaf is not None:
                try:
                    values = values + (step_value(step.op, step.operands, path.values, leaf, config.limits),)
                except ExecutionError:
                    failed += 1
                    continue
            kept.append(Path(0, path.n_steps_p, path.steps + (step,), score, values))
        frontier = kept
    finished.extend(finish(path, 1.0) for path in frontier if path.steps)
    finished.sort(key=lambda path: -path.score)
    return finished[: config.max_paths], failed


def _used_slots(path: Path) -> frozenset[int]:
    return frozenset(int(c[1]) for step in path.steps for c in step.operands if c[0] == "step")


def _used_mentions(path: Path) -> frozenset[int]:
    return frozenset(int(c[1]) for step in path.steps for c in step.operands if c[0] == "problem")


def _coverage(relevance: Sequence[float], covered: frozenset[int]) -> float:
    """C1's agreement with the mentions a program uses: Π r (used) or 1 − r (unused)."""
    factor = 1.0
    for index, r in enumerate(relevance):
        r = min(max(float(r), 1e-3), 1.0 - 1e-3)
        factor *= r if index in covered else 1.0 - r
    return factor


def mention_relevance(proposal: Proposal) -> list[float]:
    """Per number mention, C1's highest token relevance among the tokens overlapping its span."""
    starts, ends = np.asarray(proposal.token_starts), np.asarray(proposal.token_ends)
    relevance = np.asarray(proposal.relevance, dtype=float)
    out = []
    for mention in proposal.mentions:
        overlap = (starts < mention.end) & (ends > mention.start)
        out.append(float(relevance[overlap].max()) if overlap.any() else 0.5)
    return out


Value = Union[Fraction, sympy.Expr]
_FAST_OPS = frozenset({"ADD", "SUB", "MUL", "DIV", "NEG", "SELECT", "TO_PERCENT"})


def to_sympy(value: Value) -> sympy.Expr:
    """A step value as a sympy number."""
    return sympy.Rational(value.numerator, value.denominator) if isinstance(value, Fraction) else value


def step_value(op: str, operands: Sequence[Candidate], prior: Sequence[Value],
               leaf: Callable[[Candidate], Value], limits: Limits = DEFAULT_LIMITS) -> Value:
    """Execute one step on earlier step values and operand values (raises ``ExecutionError``).

    Same semantics and bounds as :func:`app.execution.operations.evaluate_op` (which it calls for
    everything but rational ADD/SUB/MUL/DIV/NEG/SELECT/TO_PERCENT, done exactly with
    ``Fraction`` — ~50× cheaper than sympy on the beam's hot path; the chosen program is
    re-executed by :func:`app.execution.executor.execute_program` before it is reported).
    """
    args = [prior[int(c[1])] if c[0] == "step" else leaf(c) for c in operands]
    low, high = OP_ARITY[op]
    if len(args) < low or (high is not None and len(args) > high):
        raise InvalidProgram(f"{op} takes {low}..{high} operands, got {len(args)}")
    if op in _FAST_OPS and all(isinstance(a, Fraction) for a in args):
        if op == "ADD":
            result = sum(args, Fraction(0))
        elif op == "SUB":
            result = args[0] - sum(args[1:], Fraction(0))
        elif op == "MUL":
            result = math.prod(args, start=Fraction(1))
        elif op == "DIV":
            divisor = math.prod(args[1:], start=Fraction(1))
            if divisor == 0:
                raise DivisionByZero("division by zero")
            result = args[0] / divisor
        elif op == "NEG":
            result = -args[0]
        elif op == "TO_PERCENT":
            result = args[0] * 100
        else:
            result = args[0]
        if max(result.numerator.bit_length(), result.denominator.bit_length()) > limits.max_value_bits:
            raise NumberTooLarge(f"more than {limits.max_value_bits} bits")
        return result
    value = evaluate_op(op, [to_sympy(a) for a in args], limits)
    if isinstance(value, sympy.Rational):
        return Fraction(int(value.p), int(value.q))
    return value


# --------------------------------------------------------------------------- programs


def operand_value(candidate: Candidate, proposal: Proposal) -> sympy.Rational:
    """Value of a problem/constant candidate (readings: literal, 1/value, value/100)."""
    if candidate[0] == "constant":
        return parse_literal(str(candidate[1]))
    mention = proposal.mentions[int(candidate[1])]
    value = parse_literal(mention.value)
    if candidate[2] == "reciprocal":
        return sympy.Integer(1) / value if value != 0 else sympy.zoo
    if candidate[2] == "percent":
        return value / 100
    return value


def format_answer_value(value: sympy.Expr) -> str:
    """Answer text: ``"24"``, ``"3.5"``, ``"1/3"`` for rationals; LaTeX (``2 \\sqrt{3}``) otherwise."""
    if isinstance(value, sympy.Rational):
        return rational_text(value)
    return sympy.latex(value)


def path_program(path: Path, proposal: Proposal) -> Program:
    """The executable program of a complete path (step results and texts left empty).

    Problem operands carry their char span and the value under their reading; step ids are
    slot + 1; the answer step is the last one.
    """
    steps: list[Step] = []
    for slot, planned in enumerate(path.steps):
        operands: list[Operand] = []
        for candidate in planned.operands:
            if candidate[0] == "step":
                operands.append(Operand("step", ref=int(candidate[1]) + 1))
                continue
            value = operand_value(candidate, proposal)
            if not isinstance(value, sympy.Rational):
                raise ExecutionError(f"operand {candidate} has no finite value")
            if candidate[0] == "constant":
                operands.append(Operand("constant", value=rational_text(value)))
            else:
                mention = proposal.mentions[int(candidate[1])]
                operands.append(Operand("problem", value=rational_text(value),
                                        start=mention.start, end=mention.end))
        steps.append(Step(slot + 1, planned.op, tuple(operands), "", "", "arithmetic"))
    return Program(tuple(steps), len(steps))


def _step_text(step: Step, values: dict[int, sympy.Expr]) -> str:
    parts = [str(values[o.ref]) if o.kind == "step" else str(o.value) for o in step.operands]
    result = format_answer_value(values[step.id])
    symbol = _OP_SYMBOL.get(step.op)
    body = symbol.join(parts) if symbol else f"{step.op}({', '.join(parts)})"
    return f"{body}={result}"


def program_json(program: Program, values: dict[int, sympy.Expr]) -> dict[str, Any]:
    """``programs.steps`` JSON of an executed program (results and readable texts filled)."""
    steps = []
    for step in program.steps:
        operands = []
        for operand in step.operands:
            if operand.kind == "step":
                operands.append({"kind": "step", "ref": operand.ref})
            elif operand.kind == "problem":
                operands.append({"kind": "problem", "value": operand.value,
                                 "start": operand.start, "end": operand.end})
            else:
                operands.append({"kind": "constant", "value": operand.value})
        steps.append({"id": step.id, "op": step.op, "operands": operands,
                      "result": str(values[step.id]), "text": _step_text(step, values),
                      "source": step.source})
    return {"steps": steps, "answer_step": program.answer_step}


# --------------------------------------------------------------------------- answer types & vote


def value_answer_types(value: sympy.Expr) -> frozenset[str]:
    """The C6 answer types an executed value can have (see ``ANSWER_TYPES``).

    A non-negative integer is ``integer``; a negative rational ``negative`` (a negative integer
    also ``integer``); another rational ``decimal`` or ``fraction`` (the executor cannot know how
    the answer is written); an irrational real number ``radical``; anything else ``expression``.
    """
    if isinstance(value, sympy.Integer):
        return frozenset({"integer", "negative"}) if value < 0 else frozenset({"integer"})
    if isinstance(value, sympy.Rational):
        kinds = {"decimal", "fraction"}
        return frozenset(kinds | {"negative"}) if value < 0 else frozenset(kinds)
    if getattr(value, "is_number", False) and value.is_real:
        return frozenset({"radical"})
    return frozenset({"expression"})


def _same_value(left: Value, right: Value) -> bool:
    """Sympy equivalence of two executed values (rationals exactly; others numerically, then
    symbolically)."""
    if isinstance(left, Fraction) and isinstance(right, Fraction):
        return left == right
    left, right = to_sympy(left), to_sympy(right)
    if left == right:
        return True
    try:
        a, b = complex(left.evalf(30)), complex(right.evalf(30))
    except (TypeError, ValueError):
        return False
    if not math.isclose(a.real, b.real, rel_tol=1e-12, abs_tol=1e-12) or abs(a.imag - b.imag) > 1e-12:
        return False
    try:
        return bool(sympy.simplify(left - right) == 0)
    except Exception:  # sympy may fail on odd trees; numerically equal to 12 digits is then enough
        return True


@dataclass
class Executed:
    """One complete path that executed: its answer value and text, score after C6's type factor."""

    path: Path
    value: Value
    answer: str
    score: float
    verified: float | None = None  # the program verifier's logit (None without one)


@dataclass
class AnswerGroup:
    """Candidates with sympy-equivalent answers; ``mass`` = Σ path scores."""

    answer: str
    value: Value
    mass: float
    members: list[Executed] = field(default_factory=list)


@dataclass
class SearchResult:
    """The search's outcome for one problem (no gold involved anywhere).

    ``candidates`` is every distinct surviving answer (executed, type-consistent) with its pooled
    probability, best first; ``program`` the chosen program's ``programs.steps`` JSON;
    ``dropped`` counts paths removed by execution failure (``failed``) and by C6's answer type
    (``type``); ``paths_explored`` = complete paths + failed ones.
    """

    answer: str | None
    probability: float | None
    program: dict[str, Any] | None
    chosen: Path | None
    paths_explored: int
    disagreement: bool
    candidates: list[dict[str, Any]]
    no_answer_reason: str | None
    dropped: dict[str, int]
    plan: Plan | None = None
    features: list[list[float]] | None = None  # per candidate (same order), selector.FEATURES
    ranking: Any = None  # app.inference.selector.RankingInputs: the vote's groups, for fitting a selector


def _vote(executed: list[Executed], how: str = "sum") -> list[AnswerGroup]:
    groups: list[AnswerGroup] = []
    exact: dict[Fraction, AnswerGroup] = {}
    for item in executed:
        group = exact.get(item.value) if isinstance(item.value, Fraction) else None
        if group is None and not isinstance(item.value, Fraction):
            group = next((g for g in groups if _same_value(g.value, item.value)), None)
        if group is None:
            group = AnswerGroup(item.answer, item.value, 0.0, [])
            groups.append(group)
            if isinstance(item.value, Fraction):
                exact[item.value] = group
        group.mass = group.mass + item.score if how == "sum" else max(group.mass, item.score)
        group.members.append(item)
    for group in groups:
        group.members.sort(key=lambda member: -member.score)
    groups.sort(key=lambda group: (-group.mass, -group.members[0].score))
    return groups


def _leaf_values(proposal: Proposal) -> Callable[[Candidate], Value]:
    """A memoised value of each problem/constant candidate (raises ``ExecutionError``)."""
    cache: dict[Candidate, Value] = {}

    def leaf(candidate: Candidate) -> Value:
        if candidate not in cache:
            value = operand_value(candidate, proposal)
            if not isinstance(value, sympy.Rational):
                raise DivisionByZero(f"operand {candidate} has no finite value")
            cache[candidate] = Fraction(int(value.p), int(value.q))
        return cache[candidate]

    return leaf


def search(proposal: Proposal, plan: Plan, operands: Sequence[Sequence[dict[Candidate, float]]],
           config: SearchConfig = SearchConfig(), verify_fn: VerifyFn | None = None) -> SearchResult:
    """Run the search for one problem given its plan and C3's answers to ``plan.requests``
    (prefix-free: ``operands[i]`` answers ``plan.requests[i]`` for every path) and C6's step
    count distribution (``plan.step_counts``)."""
    table = {(request.slot, request.op): positions for request, positions in zip(plan.requests, operands)}

    def lookup(requests: Sequence[OperandRequest]) -> list:
        return [table.get((request.slot, request.op), []) for request in requests]

    return _search(proposal, plan, lookup, static_stops(plan.step_counts), config, collapse_stops=False,
                   verify_fn=verify_fn)


def _search(proposal: Proposal, plan: Plan, operands_fn: OperandsFn, stops_fn: StopsFn, config: SearchConfig,
            collapse_stops: bool, ops_fn: NextOpsFn | None = None, verify_fn: VerifyFn | None = None) -> SearchResult:
    """The search of one problem once its plan is made: beam, answer types, vote, executor check.

    Steps execute as the beam grows (:func:`step_value`); the winning program is executed again
    by the safe executor (:func:`~app.execution.executor.execute_program`), and with
    ``verify_all`` every candidate is.
    """
    if not proposal.mentions:
        return SearchResult(None, None, None, None, 0, False, [], NO_NUMBERS, {}, plan)
    depends = np.asarray(proposal.depends, dtype=float)
    if depends.ndim != 2:
        depends = np.full((0, 0), 0.5)
    relevance = mention_relevance(proposal)
    paths, failed = beam(plan, operands_fn, stops_fn, depends, len(proposal.mentions), config,
                         _leaf_values(proposal), relevance if config.coverage_weight else [], collapse_stops, ops_fn)
    if not paths:
        reason = NO_EXECUTABLE if failed else NO_PROGRAM
        return SearchResult(None, None, None, None, failed, False, [], reason, {"failed": failed, "type": 0}, plan)

    type_probs = {t: float(proposal.answer_type.get(t, 0.0)) for t in ANSWER_TYPES}
    total_type = sum(type_probs.values())
    kept_types = {t for t, _ in collapse(list(type_probs.items()), config.theta, config.top_k)} \
        if total_type > 0 else set(ANSWER_TYPES)
    executed: list[Executed] = []
    inconsistent = 0
    for path in paths:
        value = path.values[-1]
        if config.verify_all:
            try:
                checked = execute_program(path_program(path, proposal), config.limits).answer
            except ExecutionError:
                failed += 1
                continue
            if not _same_value(to_sympy(value), checked):
                raise AssertionError(f"step_value and the executor disagree: {value} vs {checked}")
        types = value_answer_types(to_sympy(value))
        if not types & kept_types:
            inconsistent += 1
            continue
        type_factor = (sum(type_probs[t] for t in types) / total_type) if total_type > 0 else 1.0
        executed.append(Executed(path, value, format_answer_value(to_sympy(value)), path.score * type_factor))
    if verify_fn is not None and executed:
        logits = verify_fn([item.path for item in executed])
        for item, logit in zip(executed, logits or ()):
            item.verified = float(logit)
    dropped = {"failed": failed, "type": inconsistent}
    explored = len(paths) + failed
    mention_values = _mention_values(proposal)
    units = problem_units(proposal.text, proposal.mentions)  # for the selector's unit features
    groups, features, ranking = _rank(executed, config, mention_values, relevance, units)
    while groups:  # the safe executor has the last word on the winner
        best = groups[0].members[0]
        program = path_program(best.path, proposal)
        try:
            result = execute_program(program, config.limits)
        except ExecutionError:
            result = None
        if result is not None and _same_value(to_sympy(best.value), result.answer):
            break
        executed.remove(best)
        dropped["failed"] += 1
        groups, features, ranking = _rank(executed, config, mention_values, relevance, units)
    if not groups:
        reason = NO_CONSISTENT if inconsistent else NO_EXECUTABLE
        return SearchResult(None, None, None, None, explored, False, [], reason, dropped, plan)
    candidates = [{"answer": group.answer, "probability": round(min(1.0, group.mass), 6),
                   "paths": len(group.members)} for group in groups]
    return SearchResult(
        answer=groups[0].answer,
        probability=min(1.0, groups[0].mass),
        program=program_json(program, result.values),
        chosen=best.path,
        paths_explored=explored,
        disagreement=len(groups) > 1,
        candidates=candidates,
        no_answer_reason=None,
        dropped=dropped,
        plan=plan,
        features=[[round(float(v), 6) for v in row] for row in features],
        ranking=ranking,
    )


def _mention_values(proposal: Proposal) -> list[Fraction | None]:
    values: list[Fraction | None] = []
    for mention in proposal.mentions:
        try:
            value = parse_literal(mention.value)
        except ExecutionError:
            values.append(None)
            continue
        values.append(Fraction(int(value.p), int(value.q)) if isinstance(value, sympy.Rational) else None)
    return values


def _rank(executed: list[Executed], config: SearchConfig, mention_values: list[Fraction | None],
          relevance: Sequence[float], units: Any = None) -> tuple[list[AnswerGroup], np.ndarray, Any]:
    """The vote's answer groups, re-ranked by ``config.selector`` when set, their features, and
    the selector's inputs (:class:`app.inference.selector.RankingInputs`, groups in vote order)."""
    from app.inference.selector import RankingInputs

    groups = _vote(executed, config.vote)
    ranking = RankingInputs(groups, len(executed), mention_values, list(relevance), units)
    if not groups:
        return groups, np.zeros((0, 0)), ranking
    features = ranking.features()
    if config.selector is not None:
        scores = config.selector.scores(features)
        order = sorted(range(len(groups)), key=lambda i: (-scores[i], i))
        groups = [groups[i] for i in order]
        features = features[order]
    return groups, features, ranking


def search_with(proposal: Proposal, operands_fn: OperandsFn, config: SearchConfig = SearchConfig(),
                stops_fn: Callable[[Sequence[Prefix]], Sequence[float] | None] | None = None,
                ops_fn: Callable[[Sequence[Prefix]], Sequence[dict[str, float]] | None] | None = None,
                verify_fn: VerifyFn | None = None) -> SearchResult:
    """Plan and search one problem with live specialists.

    Without learned stops (``stops_fn`` None, or returning None for ``[]``: a C6 without its
    prefix head) the step count is C6's answer slot and C3 is asked once for every (slot, op) of
    the plan. With them the beam runs over up to ``MAX_STEPS`` slots, asking C6 whether each
    path ends, C2 for each path's next op (``ops_fn``, when it answers ``[]`` with a list; else
    the per-slot ops of the plan) and C3 for each path's operands given its prefix — one call
    per slot for the whole frontier. ``verify_fn`` (the program verifier) scores every executed
    program for the selector.
    """
    if stops_fn is not None and proposal.mentions and stops_fn([]) is not None:  # [] for a C6 with a stop head
        plan = plan_requests(proposal, config, slots=MAX_STEPS)
        live_ops = ops_fn if ops_fn is not None and ops_fn([]) is not None else None
        return _search(proposal, plan, operands_fn, stops_fn, config, collapse_stops=True, ops_fn=live_ops,
                       verify_fn=verify_fn)
    plan = plan_requests(proposal, config)
    if not proposal.mentions:
        return search(proposal, plan, [], config, verify_fn)
    answers = operands_fn(plan.requests) if plan.requests else []
    return search(proposal, plan, answers, config, verify_fn)
