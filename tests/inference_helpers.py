"""Hand-made specialists' distributions for the inference tests (no model anywhere)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.execution.numbers import find_numbers
from app.execution.program import rational_text
from app.inference.proposals import ANSWER_TYPES, MAX_STEPS, MentionView, OperandRequest, Proposal

OPS = ("NONE", "ADD", "SUB", "MUL", "DIV")

NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")
BETTY = ("Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. "
         "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her "
         "parents. How much more money does Betty need to buy the wallet?")


def mention_views(text: str) -> list[MentionView]:
    return [MentionView(m.start, m.end, m.text, rational_text(m.value), m.kind) for m in find_numbers(text)]


def make_proposal(text: str, n_steps: dict[int, float], slot_ops: Sequence[dict[str, float]],
                  answer_type: dict[str, float] | None = None, depends: dict[tuple[int, int], float] | None = None,
                  constants: dict[str, float] | None = None) -> Proposal:
    """A proposal from sparse hand-written distributions (slots 0-based; n_steps maps count -> p)."""
    answer = np.zeros(MAX_STEPS)
    for count, p in n_steps.items():
        answer[count - 1] = p
    op_probs = np.zeros((MAX_STEPS, len(OPS)))
    op_probs[:, 0] = 1.0
    for slot, row in enumerate(slot_ops):
        op_probs[slot] = [row.get(op, 0.0) for op in OPS]
    dep = np.full((MAX_STEPS, MAX_STEPS), 0.5)
    for (i, j), p in (depends or {}).items():
        dep[i, j] = p
    words = [(i, i + len(w)) for i, w in _words(text)]
    types = {t: 0.0 for t in ANSWER_TYPES}
    types.update(answer_type or {"integer": 0.9, "decimal": 0.1})
    return Proposal(
        text=text, mentions=mention_views(text),
        token_starts=np.array([s for s, _ in words]), token_ends=np.array([e for _, e in words]),
        relevance=np.array([0.9 if any(m.start < e and m.end > s for m in find_numbers(text)) else 0.1
                            for s, e in words]),
        ops=OPS, op_probs=op_probs, answer_step_probs=answer, answer_type=types,
        constant_probs=constants or {"2": 0.1}, depends=dep,
        model_versions={t: "v1" for t in ("C1", "C2", "C3", "C4", "C5", "C6")},
    )


def _words(text: str) -> list[tuple[int, str]]:
    import re
    return [(m.start(), m.group()) for m in re.finditer(r"\S+", text)]


class TableOperands:
    """C3 from a table ``{(slot, op): [position distributions]}``; records how it was called."""

    def __init__(self, table: dict[tuple[int, str], list[dict[tuple, float]]]):
        self.table = table
        self.calls: list[list[OperandRequest]] = []

    def __call__(self, requests: Sequence[OperandRequest]) -> list[list[dict[tuple, float]]]:
        self.calls.append(list(requests))
        return [self.table.get((r.slot, r.op), [{("end",): 1.0}]) for r in requests]


def natalia() -> tuple[Proposal, TableOperands]:
    """48 / half(reciprocal → 2) = 24; 48 + 24 = 72 — with plausible distractors."""
    proposal = make_proposal(
        NATALIA, {2: 0.85, 1: 0.1, 3: 0.05},
        [{"DIV": 0.6, "MUL": 0.3, "ADD": 0.1}, {"ADD": 0.7, "SUB": 0.2, "MUL": 0.1}],
        depends={(0, 1): 0.9},
    )
    table = {
        (0, "DIV"): [{("problem", 0, "literal"): 0.9, ("problem", 1, "reciprocal"): 0.1},
                     {("problem", 1, "reciprocal"): 0.8, ("constant", "2"): 0.15, ("problem", 0, "literal"): 0.05},
                     {("end",): 0.95, ("problem", 1, "literal"): 0.05}],
        (0, "MUL"): [{("problem", 0, "literal"): 0.9, ("problem", 1, "literal"): 0.1},
                     {("problem", 1, "literal"): 0.7, ("problem", 1, "reciprocal"): 0.3},
                     {("end",): 1.0}],
        (0, "ADD"): [{("problem", 0, "literal"): 1.0}, {("problem", 1, "literal"): 1.0}, {("end",): 1.0}],
        (1, "ADD"): [{("problem", 0, "literal"): 0.7, ("step", 0): 0.3},
                     {("step", 0): 0.75, ("problem", 0, "literal"): 0.25},
                     {("end",): 0.9, ("step", 0): 0.1}],
        (1, "SUB"): [{("problem", 0, "literal"): 0.9, ("step", 0): 0.1}, {("step", 0): 1.0}, {("end",): 1.0}],
        (1, "MUL"): [{("step", 0): 1.0}, {("constant", "2"): 1.0}, {("end",): 1.0}],
    }
    return proposal, TableOperands(table)


def betty() -> tuple[Proposal, TableOperands]:
    """100 / 2 = 50; 15 * 2 = 30; 100 - 50 - 30 - 15 = 5."""
    proposal = make_proposal(
        BETTY, {3: 0.7, 2: 0.2, 4: 0.1},
        [{"DIV": 0.8, "MUL": 0.2}, {"MUL": 0.75, "ADD": 0.25}, {"SUB": 0.65, "ADD": 0.35}],
        depends={(0, 2): 0.85, (1, 2): 0.85, (0, 1): 0.1},
    )
    table = {
        (0, "DIV"): [{("problem", 0, "literal"): 0.95, ("problem", 2, "literal"): 0.05},
                     {("problem", 1, "reciprocal"): 0.85, ("constant", "2"): 0.15}, {("end",): 1.0}],
        (0, "MUL"): [{("problem", 0, "literal"): 1.0}, {("problem", 1, "literal"): 1.0}, {("end",): 1.0}],
        (1, "MUL"): [{("problem", 2, "literal"): 0.8, ("step", 0): 0.2},
                     {("problem", 3, "literal"): 0.9, ("constant", "2"): 0.1}, {("end",): 1.0}],
        (1, "ADD"): [{("problem", 2, "literal"): 1.0}, {("problem", 2, "literal"): 1.0}, {("end",): 1.0}],
        (2, "SUB"): [{("problem", 0, "literal"): 0.9, ("step", 0): 0.1},
                     {("step", 0): 0.8, ("step", 1): 0.2},
                     {("step", 1): 0.8, ("problem", 2, "literal"): 0.2},
                     {("problem", 2, "literal"): 0.7, ("end",): 0.3}],
        (2, "ADD"): [{("step", 0): 0.6, ("step", 1): 0.4}, {("step", 1): 0.9, ("problem", 2, "literal"): 0.1},
                     {("problem", 2, "literal"): 0.5, ("end",): 0.5}],
    }
    return proposal, TableOperands(table)


class FakeSpecialists:
    """A ``Specialists`` built from hand-made proposals keyed by text; unknown texts get a
    deterministic text-derived proposal (ADD of the first two numbers)."""

    def __init__(self, known: dict[str, tuple[Proposal, TableOperands]] | None = None,
                 model_version: str = "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"):
        self.known = known or {}
        self._version = model_version

    @property
    def model_version(self) -> str:
        return self._version

    def propose(self, texts: Sequence[str]) -> list[Proposal]:
        out = []
        for text in texts:
            if text in self.known:
                out.append(self.known[text][0])
            else:
                out.append(make_proposal(text, {1: 0.9, 2: 0.1}, [{"ADD": 0.6, "MUL": 0.4}, {"ADD": 1.0}]))
        return out

    def operands(self, text: str, requests: Sequence[OperandRequest]) -> list[list[dict[tuple, float]]]:
        if text in self.known:
            return self.known[text][1](requests)
        n = len(find_numbers(text))
        table = {}
        for request in requests:
            first = {("problem", 0, "literal"): 1.0} if n else {("constant", "2"): 1.0}
            second = {("problem", 1, "literal"): 0.8, ("constant", "2"): 0.2} if n > 1 else {("constant", "2"): 1.0}
            if request.slot > 0:
                first = {("step", request.slot - 1): 1.0}
            table[(request.slot, request.op)] = [first, second, {("end",): 1.0}]
        return [table[(r.slot, r.op)] for r in requests]
