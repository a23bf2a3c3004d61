"""Labels → per-specialist training examples. Pure: no DB, no torch.

Input is one :class:`ProblemData` per problem (text + the current label payload per task, in
the shapes of the learning contract); output is small dataclasses of numpy arrays, per
specialist. CHAR offsets come from the labels; TOKEN indices from the frozen backbone's offset
mapping (:class:`training.encoder.Encoded`). Splits are by problem, decided upstream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.execution.numbers import find_numbers
from app.inference.proposals import ANSWER_TYPES, MAX_OPERANDS, MAX_STEPS, READINGS, MentionView

NONE_OP = "NONE"
IGNORE = -100


@dataclass(frozen=True)
class ProblemData:
    """One problem: its text and current label payload per task (``"C1"``..``"C6"``)."""

    problem_id: int
    text: str
    labels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------- text helpers


def mentions_of(text: str) -> list[MentionView]:
    """The number mentions of ``text`` (:func:`app.execution.numbers.find_numbers`), char offsets."""
    from app.execution.program import rational_text

    return [MentionView(m.start, m.end, m.text, rational_text(m.value), m.kind) for m in find_numbers(text)]


def span_pairs(raw: Iterable[Any]) -> list[tuple[int, int]]:
    """``[[s, e], …]`` or ``[{"start": s, "end": e}, …]`` → ``[(s, e), …]`` (CHAR offsets)."""
    pairs = []
    for item in raw or ():
        if isinstance(item, Mapping):
            pairs.append((int(item["start"]), int(item["end"])))
        else:
            pairs.append((int(item[0]), int(item[1])))
    return pairs


def token_targets(starts: np.ndarray, ends: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """(T,) int64: 1 where a text token (end > start) overlaps a char span, else 0; special tokens IGNORE."""
    out = np.zeros(len(starts), dtype=np.int64)
    for s, e in spans:
        out[(starts < e) & (ends > s)] = 1
    out[ends <= starts] = IGNORE
    return out


def mention_token_matrix(starts: np.ndarray, ends: np.ndarray, mentions: Sequence[MentionView]) -> np.ndarray:
    """(M, T) float32: row i spreads weight 1 uniformly over the tokens overlapping mention i.

    A mention past the truncated token range gets an all-zero row.
    """
    matrix = np.zeros((len(mentions), len(starts)), dtype=np.float32)
    text = ends > starts
    for i, m in enumerate(mentions):
        hit = text & (starts < m.end) & (ends > m.start)
        if hit.any():
            matrix[i, hit] = 1.0 / hit.sum()
    return matrix


MENTION_ORDINALS = 16  # mention i ≥ 15 shares the last ordinal
MAGNITUDES = 12  # floor(log10 |value|) in -3..7 → 0..10; 11 for zero or unreadable


def magnitude_bucket(value: float) -> int:
    """floor(log10 |value|) clipped to -3..7 → 0..10; ``MAGNITUDES - 1`` for zero or not finite."""
    value = abs(value)
    if value == 0.0 or not np.isfinite(value):
        return MAGNITUDES - 1
    return int(np.clip(np.floor(np.log10(value)), -3, 7)) + 3


def mention_features(mentions: Sequence[MentionView], m_max: int | None = None) -> np.ndarray:
    """(M, 3) int64 per mention: its ordinal in the text, its magnitude bucket and its kind
    (:data:`app.execution.numbers.NUMBER_KINDS`), padded with zeros to ``m_max`` rows. Pure text
    features, the same at training and inference."""
    from fractions import Fraction

    from app.execution.numbers import NUMBER_KINDS

    out = np.zeros((m_max if m_max is not None else len(mentions), 3), dtype=np.int64)
    for i, m in enumerate(mentions[: len(out)]):
        try:
            value = abs(float(Fraction(m.value)))
        except (ValueError, ZeroDivisionError):
            value = 0.0
        magnitude = magnitude_bucket(value)
        kind = NUMBER_KINDS.index(m.kind) if m.kind in NUMBER_KINDS else 0
        out[i] = (min(i, MENTION_ORDINALS - 1), magnitude, kind)
    return out


def mention_index(mentions: Sequence[MentionView], start: int, end: int) -> int | None:
    """Index of the mention with exactly these char offsets, else the one overlapping most, else None."""
    best, overlap = None, 0
    for i, m in enumerate(mentions):
        if (m.start, m.end) == (start, end):
            return i
        o = min(m.end, end) - max(m.start, start)
        if o > overlap:
            best, overlap = i, o
    return best


def n_steps_of(labels: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The program length a problem's labels imply (C6, else C5, else C2), or None."""
    for task, key in (("C6", "n_steps"), ("C5", "n_steps")):
        if task in labels and labels[task].get(key) is not None:
            return int(labels[task][key])
    if "C2" in labels:
        return len(labels["C2"].get("steps", []))
    return None


# --------------------------------------------------------------------------- label maps


def op_vocabulary(records: Iterable[ProblemData]) -> list[str]:
    """Sorted ops of the C2 (and C3) labels, then ``NONE`` (the label of slots past the program)."""
    ops: set[str] = set()
    for r in records:
        for task in ("C2", "C3"):
            for step in r.labels.get(task, {}).get("steps", []):
                ops.add(str(step["op"]))
    return [*sorted(ops), NONE_OP]


def constant_vocabulary(records: Iterable[ProblemData], min_count: int = 2, max_size: int = 32) -> list[str]:
    """Constants of the C4 labels (and C3 constant operands) seen in ≥ ``min_count`` problems.

    Ordered by frequency (desc) then text; at most ``max_size``.
    """
    counts: Counter[str] = Counter()
    for r in records:
        seen = set(map(str, r.labels.get("C4", {}).get("constants", [])))
        for step in r.labels.get("C3", {}).get("steps", []):
            seen |= {str(o["value"]) for o in step.get("operands", []) if o.get("kind") == "constant"}
        counts.update(seen)
    ranked = sorted((c for c in counts.items() if c[1] >= min_count), key=lambda kv: (-kv[1], kv[0]))
    return [value for value, _ in ranked[:max_size]]


# --------------------------------------------------------------------------- per-specialist examples


@dataclass(frozen=True)
class C1Example:
    index: int  # position in the encoded list
    targets: np.ndarray  # (T,) 0/1, IGNORE on special tokens


@dataclass(frozen=True)
class C2Example:
    index: int
    ops: np.ndarray  # (K,) op indices, NONE past the program
    program: tuple = ()  # the C3-labelled steps (ProgramStep), for the next-op head


@dataclass(frozen=True)
class C3Example:
    index: int
    slot: int  # 0-based step slot k
    op: int  # op index
    targets: tuple[tuple, ...]  # MAX_OPERANDS entries: ("problem", i, r) | ("step", j) | ("constant", c) | ("end",) | ("ignore",)
    prefix: tuple[ProgramStep, ...] = ()  # the k earlier steps (op index, operand targets)


@dataclass(frozen=True)
class C4Example:
    index: int
    targets: np.ndarray  # (V,) 0/1 per constant of the vocabulary


@dataclass(frozen=True)
class C5Example:
    index: int
    n_steps: int
    edges: np.ndarray  # (K, K) 0/1 at [i, j] when slot j consumes slot i (i < j < n_steps)


@dataclass(frozen=True)
class C6Example:
    index: int
    answer_slot: int  # 0-based
    answer_type: int  # index into ANSWER_TYPES
    program: tuple[ProgramStep, ...] = ()  # steps through the answer step (C3 labels), for the stop head


def c1_examples(records: Sequence[ProblemData], encoded: Sequence[Any]) -> list[C1Example]:
    out = []
    for i, (r, enc) in enumerate(zip(records, encoded)):
        payload = r.labels.get("C1")
        if payload is None or "regions" not in payload:
            continue
        out.append(C1Example(i, token_targets(enc.starts, enc.ends, span_pairs(payload["regions"]))))
    return out


def c2_examples(records: Sequence[ProblemData], ops: Sequence[str],
                mentions: Sequence[Sequence[MentionView]] | None = None, constants: Sequence[str] = ()) -> list[C2Example]:
    """One example per problem: the op per slot; with ``mentions`` also its C3-labelled steps
    (the next-op head learns step k's op from steps 0..k-1) when they agree with the C2 ops."""
    index = {op: k for k, op in enumerate(ops)}
    const_index = {c: k for k, c in enumerate(constants)}
    out = []
    for i, r in enumerate(records):
        steps = r.labels.get("C2", {}).get("steps")
        if not steps or len(steps) > MAX_STEPS or any(str(s["op"]) not in index for s in steps):
            continue
        targets = np.full(MAX_STEPS, index[NONE_OP], dtype=np.int64)
        targets[: len(steps)] = [index[str(s["op"])] for s in steps]
        program: tuple = ()
        if mentions is not None:
            program = tuple(program_steps(r, mentions[i], index, const_index) or ())
            if [op for op, _ in program] != targets[: len(steps)].tolist():
                program = ()
        out.append(C2Example(i, targets, program))
    return out


ProgramStep = tuple[int, tuple[tuple, ...]]
"""One labelled step as the prefix-conditioned heads see it: (op index, operand targets) with
targets ``("problem", i, r)`` | ``("step", j)`` | ``("constant", c)`` | ``("ignore",)``."""


def program_steps(record: ProblemData, mentions: Sequence[MentionView], op_index: Mapping[str, int],
                  const_index: Mapping[str, int]) -> list[ProgramStep] | None:
    """The C3-labelled program of one problem as (op index, operand targets) per step, or None
    when it has no C3 label, an op outside the vocabulary or more than ``MAX_STEPS`` steps.

    A constant outside the vocabulary or an ungroundable span becomes ``("ignore",)``.
    """
    steps = record.labels.get("C3", {}).get("steps")
    if not steps or len(steps) > MAX_STEPS or any(str(s["op"]) not in op_index for s in steps):
        return None
    out: list[ProgramStep] = []
    for k, step in enumerate(steps):
        targets: list[tuple] = []
        for o in step.get("operands", []):
            kind = o.get("kind")
            if kind == "problem":
                m = mention_index(mentions, int(o["start"]), int(o["end"]))
                reading = o.get("reading", "literal")
                ok = m is not None and reading in READINGS
                targets.append(("problem", m, READINGS.index(reading)) if ok else ("ignore",))
            elif kind == "step":
                j = int(o["ref"]) - 1
                targets.append(("step", j) if 0 <= j < k else ("ignore",))
            elif kind == "constant":
                c = const_index.get(str(o["value"]))
                targets.append(("constant", c) if c is not None else ("ignore",))
            else:
                targets.append(("ignore",))
        out.append((op_index[str(step["op"])], tuple(targets)))
    return out


def c3_examples(
    records: Sequence[ProblemData], mentions: Sequence[Sequence[MentionView]], ops: Sequence[str], constants: Sequence[str]
) -> list[C3Example]:
    """One example per labelled step, with the program's earlier steps as its prefix. A step with
    more than ``MAX_OPERANDS`` operands is dropped (it still appears in later prefixes)."""
    op_index = {op: k for k, op in enumerate(ops)}
    const_index = {c: k for k, c in enumerate(constants)}
    out = []
    for i, r in enumerate(records):
        program = program_steps(r, mentions[i], op_index, const_index)
        for k, (op, operands) in enumerate(program or ()):
            if len(operands) > MAX_OPERANDS:
                continue
            targets = list(operands)
            if len(targets) < MAX_OPERANDS:
                targets.append(("end",))
            targets += [("ignore",)] * (MAX_OPERANDS - len(targets))
            out.append(C3Example(i, k, op, tuple(targets), tuple(program[:k])))
    return out


def c4_examples(records: Sequence[ProblemData], constants: Sequence[str]) -> list[C4Example]:
    index = {c: k for k, c in enumerate(constants)}
    out = []
    for i, r in enumerate(records):
        payload = r.labels.get("C4")
        if payload is None or "constants" not in payload:
            continue
        targets = np.zeros(len(constants), dtype=np.float32)
        for c in payload["constants"]:
            if str(c) in index:
                targets[index[str(c)]] = 1.0
        out.append(C4Example(i, targets))
    return out


def c5_examples(records: Sequence[ProblemData]) -> list[C5Example]:
    out = []
    for i, r in enumerate(records):
        payload = r.labels.get("C5")
        if payload is None or payload.get("n_steps") is None:
            continue
        n = int(payload["n_steps"])
        if not 1 <= n <= MAX_STEPS:
            continue
        edges = np.zeros((MAX_STEPS, MAX_STEPS), dtype=np.float32)
        for a, b in payload.get("edges", []):
            if 1 <= a < b <= n:
                edges[a - 1, b - 1] = 1.0
        out.append(C5Example(i, n, edges))
    return out


def c6_examples(records: Sequence[ProblemData], mentions: Sequence[Sequence[MentionView]] | None = None,
                ops: Sequence[str] = (), constants: Sequence[str] = ()) -> list[C6Example]:
    """One example per problem; with ``mentions`` and ``ops`` each carries its C3-labelled steps
    through the answer step (empty when the C3 label is missing or does not reach it)."""
    op_index = {op: k for k, op in enumerate(ops)}
    const_index = {c: k for k, c in enumerate(constants)}
    out = []
    for i, r in enumerate(records):
        payload = r.labels.get("C6")
        if payload is None or payload.get("answer_step") is None:
            continue
        slot = int(payload["answer_step"]) - 1
        kind = payload.get("answer_type", "integer")
        if not 0 <= slot < MAX_STEPS or kind not in ANSWER_TYPES:
            continue
        program: tuple[ProgramStep, ...] = ()
        if mentions is not None and op_index:
            steps = program_steps(r, mentions[i], op_index, const_index) or []
            program = tuple(steps[: slot + 1]) if len(steps) > slot else ()
        out.append(C6Example(i, slot, ANSWER_TYPES.index(kind), program))
    return out


def pad_states(states: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged (T_i, H) → (B, T_max, H) float32 and a (B, T_max) bool mask (True = real token)."""
    t_max = max(len(s) for s in states)
    hidden = states[0].shape[1]
    out = np.zeros((len(states), t_max, hidden), dtype=np.float32)
    mask = np.zeros((len(states), t_max), dtype=bool)
    for b, s in enumerate(states):
        out[b, : len(s)] = s
        mask[b, : len(s)] = True
    return out, mask
