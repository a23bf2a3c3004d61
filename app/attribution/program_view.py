"""The six label / prediction payloads of one problem, read into one comparable program view.

Reference labels and specialist predictions share the payload shapes of the learning contract
(``notes/learning_contract.md``): C1 regions, C2 ops per step, C3 operands per step, C4 constants,
C5 edges, C6 answer step / type. Predictions add probabilities (``p``, ``top``, a third region
element: the score), which are ignored here. All offsets are CHAR offsets into ``problems.text``
(end exclusive); step ids are 1-based in execution order.

Pure: no database, no sympy beyond parsing operand literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

TASKS: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5", "C6")
COMMUTATIVE_OPS: frozenset[str] = frozenset({"ADD", "MUL"})
"""Ops whose operand order does not matter (compared as multisets); every other op is ordered
(SUB and DIV fold left; EQUATION operands are the equation's numbers left to right)."""


@lru_cache(maxsize=4096)
def value_key(text: str) -> str:
    """A canonical text for an operand literal: ``"0.5"``, ``"1/2"`` and ``"50%"`` all give ``"1/2"``.

    Literals :func:`app.execution.operations.parse_literal` refuses are kept as their stripped text.
    """
    from app.execution.errors import ExecutionError
    from app.execution.operations import parse_literal

    try:
        return str(parse_literal(str(text)))
    except (ExecutionError, ValueError, ZeroDivisionError):
        return str(text).strip()


@dataclass(frozen=True)
class Operand:
    """One operand of a step: ``kind`` ∈ problem | step | constant.

    ``value`` is the canonical value (:func:`value_key`) for problem and constant operands;
    ``ref`` the 1-based step id for step operands; ``start``/``end`` the CHAR span of a problem
    operand's mention; ``reading`` ∈ literal | reciprocal | percent.
    """

    kind: str
    value: str | None = None
    ref: int | None = None
    start: int | None = None
    end: int | None = None
    reading: str | None = None

    @property
    def grounding(self) -> tuple[str, str | None]:
        """What the operand reads, without wiring: ``("problem", value)``, ``("constant", value)``
        or ``("step", None)`` — which earlier step is compared separately (DEPENDENCY)."""
        return (self.kind, None) if self.kind == "step" else (self.kind, self.value)

    def as_json(self) -> dict[str, Any]:
        if self.kind == "step":
            return {"kind": "step", "ref": self.ref}
        out: dict[str, Any] = {"kind": self.kind, "value": self.value}
        if self.kind == "problem":
            out.update(start=self.start, end=self.end, reading=self.reading)
        return out


@dataclass(frozen=True)
class Step:
    """One program step: 1-based ``step`` id, ``op`` (C2, else C3's op) and ``operands`` (C3)."""

    step: int
    op: str | None
    operands: tuple[Operand, ...] = ()

    def groundings(self, op: str | None = None) -> tuple[tuple[str, str | None], ...]:
        """Operand groundings, sorted when ``op`` (default: this step's op) is commutative (order-free),
        else in position order. Pass the reference op to compare a predicted step under its rule."""
        keys = tuple(o.grounding for o in self.operands)
        if (op or self.op) in COMMUTATIVE_OPS:
            return tuple(sorted(keys, key=lambda k: (k[0], k[1] or "")))
        return keys


@dataclass
class ProgramView:
    """The comparable content of one problem's labels or predictions.

    ``steps`` come from C3 (operands) merged with C2 (ops; C2's op wins where both give one);
    ``regions`` (C1) are merged, sorted ``(start, end)`` CHAR spans; ``constants`` (C4) canonical
    values; ``edges`` (C5) ``(i, j)``: step j consumes step i's result; ``answer_step`` /
    ``answer_type`` (C6). ``tasks`` names the payloads that were present; a missing payload
    leaves its field ``None`` so that a check on it is skipped, never guessed.
    """

    tasks: frozenset[str]
    steps: list[Step] | None = None
    regions: list[tuple[int, int]] | None = None
    constants: frozenset[str] | None = None
    edges: frozenset[tuple[int, int]] | None = None
    answer_step: int | None = None
    answer_type: str | None = None
    c6_n_steps: int | None = None
    c2_ops: dict[int, str] | None = None
    c3_steps: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.tasks

    @property
    def n_steps(self) -> int | None:
        """Number of steps: C3's / C2's step list, else C6's ``n_steps``."""
        if self.steps is not None:
            return len(self.steps)
        return self.c6_n_steps

    def operand_edges(self) -> frozenset[tuple[int, int]] | None:
        """Edges implied by the C3 step operands (None without C3)."""
        if not self.c3_steps or self.steps is None:
            return None
        return frozenset((o.ref, s.step) for s in self.steps for o in s.operands
                         if o.kind == "step" and o.ref is not None)

    def dag_edges(self) -> frozenset[tuple[int, int]] | None:
        """C5's edges, else those implied by the C3 step operands."""
        return self.edges if self.edges is not None else self.operand_edges()


def _operand(raw: Mapping[str, Any]) -> Operand:
    kind = str(raw.get("kind", ""))
    if kind == "step":
        return Operand(kind="step", ref=int(raw["ref"]) if raw.get("ref") is not None else None)
    value = raw.get("value")
    return Operand(
        kind=kind,
        value=value_key(str(value)) if value is not None else None,
        start=raw.get("start"),
        end=raw.get("end"),
        reading=raw.get("reading", "literal") if kind == "problem" else None,
    )


def read_program(payloads: Mapping[str, Mapping[str, Any] | None]) -> ProgramView:
    """Read ``{task: payload}`` (any subset of C1..C6; ``None`` = absent) into a :class:`ProgramView`.

    Raises ``ValueError`` naming the task for a payload that is not a JSON object.
    """
    present = {t: p for t, p in payloads.items() if t in TASKS and p is not None}
    for task, payload in present.items():
        if not isinstance(payload, Mapping):
            raise ValueError(f"{task} payload must be an object, got {type(payload).__name__}")
    view = ProgramView(tasks=frozenset(present))
    if "C1" in present:
        view.regions = sorted((int(r[0]), int(r[1])) for r in present["C1"].get("regions", []) if len(r) >= 2)
    if "C2" in present:
        view.c2_ops = {int(s["step"]): s.get("op") for s in present["C2"].get("steps", [])}
    if "C3" in present:
        view.c3_steps = True
        view.steps = [
            Step(step=int(s["step"]), op=(view.c2_ops or {}).get(int(s["step"])) or s.get("op"),
                 operands=tuple(_operand(o) for o in s.get("operands", [])))
            for s in sorted(present["C3"].get("steps", []), key=lambda s: int(s["step"]))
        ]
    elif view.c2_ops is not None:
        view.steps = [Step(step=i, op=op) for i, op in sorted(view.c2_ops.items())]
    if "C4" in present:
        view.constants = frozenset(value_key(str(c)) for c in present["C4"].get("constants", []))
    if "C5" in present:
        view.edges = frozenset((int(i), int(j)) for i, j in present["C5"].get("edges", []))
    if "C6" in present:
        c6 = present["C6"]
        view.answer_step = int(c6["answer_step"]) if c6.get("answer_step") is not None else None
        view.answer_type = c6.get("answer_type")
        view.c6_n_steps = int(c6["n_steps"]) if c6.get("n_steps") is not None else None
    return view
