"""The contract between the trained specialists (``training/``) and the gold-blind search.

The specialists read **problem text only** and return calibrated distributions; the search
(``app.inference.search``) turns them into candidate programs, executes them and votes. Nothing
here can carry a gold answer: a :class:`Proposal` is built from the problem text and the models.

Steps are *slots*: slot ``k`` (0-based) is the k-th step of the program in execution order, the
same order as the reference programs the labels come from (``programs.steps``, step id = k + 1).
The program has ``answer_step + 1`` steps (C6); slots after it are ignored.

Operand candidates of a step slot (C3 pointers), written as tuples:

* ``("problem", i, reading)`` — number mention ``i`` of :func:`app.execution.numbers.find_numbers`
  (char offsets ``mentions[i].start:end`` into the problem text), read as ``"literal"`` (its value),
  ``"reciprocal"`` (1 / value: "half" used as ``/ 2``) or ``"percent"`` (value / 100);
* ``("step", j)`` — the result of an earlier slot ``j < k`` (a C5 dependency edge j → k);
* ``("constant", value)`` — a constant not written in the problem (C4), ``value`` a literal
  :func:`app.execution.operations.parse_literal` accepts (``"60"``, ``"1/2"``);
* ``("end",)`` — no further operand at this position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Candidate = tuple  # ("problem", i, reading) | ("step", j) | ("constant", value) | ("end",)


@dataclass(frozen=True)
class Chained:
    """An operand position ≥ 1 whose distribution depends on the candidate chosen at the position
    before it (C3 pairs "three toys at $10" rather than mixing the marginals of two positions):
    ``given(previous)`` is that distribution, ``candidate → probability``."""

    given: Callable[[Candidate], dict[Candidate, float]]
READINGS: tuple[str, ...] = ("literal", "reciprocal", "percent")

ANSWER_TYPES: tuple[str, ...] = (
    "integer", "decimal", "fraction", "negative", "radical", "expression", "tuple", "interval", "text",
)
"""C6 answer types. ``negative`` is a negative rational; ``radical`` an irrational closed form
(``2\\sqrt{3}``, ``\\pi``); ``expression`` has free symbols; ``text`` is anything the executor
cannot produce (a word answer). Derived from the gold answer for labels, from C6 at inference."""


@dataclass(frozen=True)
class MentionView:
    """A number mention of the problem text, as the specialists saw it (char offsets)."""

    start: int
    end: int
    text: str
    value: str  # the literal value, as parse_literal text ("48", "1/2", "3.5")
    kind: str  # app.execution.numbers.NUMBER_KINDS


@dataclass
class Proposal:
    """The specialists' distributions for one problem (all probabilities calibrated).

    * ``token_starts``/``token_ends`` (T,): char offsets of the specialists' tokens;
      ``relevance`` (T,): C1's P(token is inside a region).
    * ``op_probs`` (K, n_ops): C2's op distribution per step slot, columns named by ``ops``.
    * ``answer_step_probs`` (K,): C6's P(slot k is the answer step); ``answer_type`` maps
      :data:`ANSWER_TYPES` to probabilities.
    * ``constant_probs``: C4's P(constant needed) per constant literal.
    * ``depends`` (K, K): C5's P(slot j consumes slot i's result) at ``[i, j]`` (upper triangle).
    """

    text: str
    mentions: list[MentionView]
    token_starts: np.ndarray
    token_ends: np.ndarray
    relevance: np.ndarray
    ops: tuple[str, ...]
    op_probs: np.ndarray
    answer_step_probs: np.ndarray
    answer_type: dict[str, float]
    constant_probs: dict[str, float]
    depends: np.ndarray
    model_versions: dict[str, str] = field(default_factory=dict)  # specialist -> version


@dataclass(frozen=True)
class PrefixStep:
    """An earlier step of a candidate program, as C3 and C6 condition on it: its op and operand
    candidates (the tuples of the module docstring)."""

    op: str
    operands: tuple[Candidate, ...]


Prefix = tuple[PrefixStep, ...]
"""The steps of a partial program in slot order (slot ``j`` is ``prefix[j]``)."""


@dataclass(frozen=True)
class OperandRequest:
    """One C3 query: which operands does step slot ``slot`` with operation ``op`` take, after the
    steps ``prefix`` (``len(prefix) == slot`` when given; ``()``: no prefix information)?"""

    slot: int
    op: str
    prefix: Prefix = ()


class Specialists(Protocol):
    """What the search needs from a loaded set of C1–C6 models (``training.specialists``)."""

    @property
    def model_version(self) -> str:
        """The pipeline version: the six specialists' versions, e.g. ``C1v2.C2v3.C3v1.C4v1.C5v1.C6v1``."""
        ...

    def propose(self, texts: Sequence[str]) -> list[Proposal]:
        """C1, C2, C4, C5, C6 for a batch of problem texts (one padded pass per specialist)."""
        ...

    def operands(self, text: str, requests: Sequence[OperandRequest]) -> list[list[dict[Candidate, float] | Chained]]:
        """C3 for one problem and many (slot, op) requests in one padded pass.

        Returns, per request, one distribution per operand position (at most ``MAX_OPERANDS``),
        each mapping candidates (see the module docstring) to probabilities — or, for a position
        ≥ 1 that reads the operand before it, a :class:`Chained` one.
        """
        ...

    def stops(self, text: str, prefixes: Sequence[Prefix]) -> list[float] | None:
        """C6 for one problem and many partial programs in one padded pass: per prefix (≥ 1 step),
        P(its last step is the answer step, so the program ends there); ``[]`` for no prefixes.
        ``None`` when the loaded C6 has no prefix-conditioned head (the search then uses
        ``Proposal.answer_step_probs``)."""
        ...

    def next_ops(self, text: str, prefixes: Sequence[Prefix]) -> list[dict[str, float]] | None:
        """C2 for one problem and many partial programs in one padded pass: per prefix, P(op of
        the next step) by op name; ``[]`` for no prefixes. ``None`` when the loaded C2 has no
        prefix-conditioned head (the search then uses ``Proposal.op_probs`` per slot)."""
        ...


MAX_STEPS = 8
MAX_OPERANDS = 4
