"""Labels of the six specialists from one execution-validated program (pure: no DB, no spaCy).

Input: the problem text, the stored program JSON (``programs.steps``, shape in
:mod:`app.execution.program`), the gold answer, the problem's clause table (see
:func:`app.labels.parse.clause_tables`) and, where a teacher trace exists, its IAF/clause regions.
Output: one payload per task. **These payload shapes are a contract** (notes/learning_contract.md;
training, inference, attribution and review code read them). All positions are **char offsets**
into ``problems.text`` (half-open ``[start, end)``). Step ids are the program's step ids
(1-based, consecutive, execution order); slot k = step id k + 1.

* C1 ``{"regions": [[start, end], ...], "operand_spans": [[start, end], ...]}`` — ``regions``:
  sorted, merged (overlap or whitespace-only gap) union of the clause-expanded problem-operand
  mentions and the trace's IAF/clause regions; ``operand_spans``: sorted unique spans of every
  problem operand (the mentions themselves).
* C2 ``{"steps": [{"step": 1, "op": "DIV", "region": [start, end] | null}, ...]}`` — one entry per
  step; ``region`` is the hull of the clause-expanded spans of the step's own problem operands,
  ``null`` when the step reads no problem number (only earlier results / constants).
* C3 ``{"steps": [{"step": 1, "op": "DIV", "operands": [
  {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"},
  {"kind": "step", "ref": 1}, {"kind": "constant", "value": "2"}]}, ...]}`` — operands in the
  program's order; ``value`` is the program's literal (``parse_literal`` text, ``"20%"`` = 1/5);
  ``reading`` ∈ ``literal | percent | reciprocal``. Invariant (checked here): the number mention
  of :func:`app.execution.numbers.find_numbers` at exactly ``[start, end)``, read under
  ``reading``, equals ``parse_literal(value)`` — literal: equal; percent: mention / 100;
  reciprocal: 1 / mention ("half" used as ÷2 gives the operand 2).
* C4 ``{"constants": ["2", "60"]}`` — unique literals of the constant operands, sorted by
  numeric value (then text); ``[]`` is a label too (no implicit constant needed).
* C5 ``{"n_steps": 3, "edges": [[1, 2], [2, 3]]}`` — sorted ``(i, j)``: step j consumes step i.
* C6 ``{"answer_step": 3, "n_steps": 3, "answer_type": "integer"}`` — ``answer_type`` from the
  gold answer text, one of :data:`app.inference.proposals.ANSWER_TYPES`.

A program that breaks any of these rules (not loadable, ids not 1..n, no answer step, an operand
span that is not a number mention or does not give its value) raises :class:`LabelError`; the
caller names the program and skips that problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from app.execution.equivalence import normalize_answer
from app.execution.errors import ExecutionError
from app.execution.numbers import NumberMention, find_numbers
from app.execution.operations import parse_literal
from app.execution.program import READINGS, Program, mention_reading, program_from_json
from app.inference.proposals import ANSWER_TYPES
from app.signals.alignment import trim_span
from app.signals.clauses import merge_spans

__all__ = ["TASKS", "ClauseTable", "LabelError", "derive_labels", "answer_type", "expand_spans"]

TASKS: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5", "C6")
Span = tuple[int, int]


class LabelError(ValueError):
    """A stored program from which no consistent labels can be derived (message says why)."""


@dataclass(frozen=True)
class ClauseTable:
    """Clause structure of one problem text (from one spaCy parse; see app.labels.parse).

    ``heads`` (n_tokens,): index of each spaCy token's clause head; ``spans``: clause head →
    its clause's char span; ``starts``/``ends`` (n_tokens,): char offsets of the spaCy tokens;
    ``math``: char spans of LaTeX math (atomic: a region never cuts one).
    """

    heads: np.ndarray
    spans: Mapping[int, Span]
    starts: np.ndarray
    ends: np.ndarray
    math: tuple[Span, ...] = ()


def expand_spans(text: str, seeds: Sequence[Span], table: ClauseTable) -> list[Span]:
    """Each seed char span → the hull of the clauses of the spaCy tokens it overlaps (unmerged,
    same order); a seed over no spaCy token keeps its whitespace-trimmed span. Spans are widened
    to whole LaTeX formulas. Same rule as :func:`app.signals.clauses.expand_to_clauses`."""
    out: list[Span] = []
    for s, e in seeds:
        hit = np.flatnonzero((table.starts < e) & (table.ends > s))
        if hit.size == 0:
            span = trim_span(text, int(s), int(e))
        else:
            clauses = [table.spans[int(table.heads[i])] for i in hit]
            span = (min(c[0] for c in clauses), max(c[1] for c in clauses))
        lo, hi = span
        for ms, me in table.math:
            if ms < hi and me > lo:
                lo, hi = min(lo, ms), max(hi, me)
        out.append((int(lo), int(hi)))
    return out


def derive_labels(
    text: str,
    program_json: Any,
    gold_answer: str,
    table: ClauseTable,
    trace_regions: Sequence[Span] = (),
    merge_whitespace_gaps: bool = True,
) -> dict[str, dict[str, Any]]:
    """The C1–C6 payloads (shapes in the module docstring) of one validated program.

    ``trace_regions``: char spans of the teacher trace's IAF/clause regions (``regions`` rows),
    empty for a reference program without a trace. Raises :class:`LabelError`.
    """
    program = _load(program_json)
    mentions = {(m.start, m.end): m for m in find_numbers(text)}
    n_steps = len(program.steps)
    c3_steps: list[dict[str, Any]] = []
    c2_steps: list[dict[str, Any]] = []
    constants: dict[str, sympy.Expr] = {}
    operand_spans: set[Span] = set()
    step_spans: list[list[Span]] = []
    for step in program.steps:
        operands: list[dict[str, Any]] = []
        spans: list[Span] = []
        for operand in step.operands:
            if operand.kind == "step":
                operands.append({"kind": "step", "ref": operand.ref})
            elif operand.kind == "constant":
                assert operand.value is not None
                constants[operand.value] = _value(operand.value, step.id)
                operands.append({"kind": "constant", "value": operand.value})
            else:
                assert operand.value is not None and operand.start is not None and operand.end is not None
                reading = _reading(text, mentions, operand.start, operand.end, operand.value,
                                   operand.reading, step.id)
                operands.append({"kind": "problem", "start": operand.start, "end": operand.end,
                                 "value": operand.value, "reading": reading})
                spans.append((operand.start, operand.end))
                operand_spans.add((operand.start, operand.end))
        c3_steps.append({"step": step.id, "op": step.op, "operands": operands})
        step_spans.append(spans)
    expanded = dict(zip(sorted(operand_spans), expand_spans(text, sorted(operand_spans), table), strict=True))
    for step, spans in zip(program.steps, step_spans, strict=True):
        hulls = [expanded[span] for span in spans]
        region = [min(h[0] for h in hulls), max(h[1] for h in hulls)] if hulls else None
        c2_steps.append({"step": step.id, "op": step.op, "region": region})
    seeds = list(expanded.values()) + [(int(s), int(e)) for s, e in trace_regions]
    regions = merge_spans(seeds, text, merge_whitespace_gaps)
    assert program.answer_step is not None
    return {
        "C1": {"regions": [list(r) for r in regions], "operand_spans": [list(s) for s in sorted(operand_spans)]},
        "C2": {"steps": c2_steps},
        "C3": {"steps": c3_steps},
        "C4": {"constants": sorted(constants, key=lambda c: (_sort_key(constants[c]), c))},
        "C5": {"n_steps": n_steps, "edges": [list(edge) for edge in program.dependency_edges()]},
        "C6": {"answer_step": program.answer_step, "n_steps": n_steps, "answer_type": answer_type(gold_answer)},
    }


def _load(program_json: Any) -> Program:
    try:
        program = program_from_json(program_json)
    except ExecutionError as error:
        raise LabelError(f"malformed program: {error}") from error
    if not program.steps:
        raise LabelError("program has no steps")
    ids = [step.id for step in program.steps]
    if ids != list(range(1, len(ids) + 1)):
        raise LabelError(f"step ids {ids[:8]} are not 1..{len(ids)} in order")
    if program.answer_step is None:
        raise LabelError("program has no answer_step")
    return program


def _value(literal: str, step_id: int) -> sympy.Expr:
    try:
        return parse_literal(literal)
    except ExecutionError as error:
        raise LabelError(f"step {step_id}: bad literal {literal!r}: {error}") from error


def _reading(text: str, mentions: Mapping[Span, NumberMention], start: int, end: int, value: str,
             stored: str | None, step_id: int) -> str:
    """The reading under which the mention at ``[start, end)`` gives ``value`` (checked)."""
    mention = mentions.get((start, end))
    if mention is None:
        raise LabelError(f"step {step_id}: operand span [{start}, {end}) {text[start:end]!r} "
                         "is not a number mention of the problem")
    operand_value = _value(value, step_id)
    if stored is not None:
        if stored not in READINGS or not _holds(mention.value, operand_value, stored):
            raise LabelError(f"step {step_id}: operand {value!r} is not {mention.text!r} read as {stored!r}")
        return stored
    reading = mention_reading(mention.value, operand_value)
    if reading is None:
        raise LabelError(f"step {step_id}: operand {value!r} does not come from {mention.text!r}")
    return reading


def _holds(mention_value: sympy.Expr, operand_value: sympy.Expr, reading: str) -> bool:
    if reading == "literal":
        return bool(mention_value == operand_value)
    if reading == "percent":
        return bool(mention_value / 100 == operand_value)
    return bool(mention_value != 0 and 1 / mention_value == operand_value)


def _sort_key(value: sympy.Expr) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


# --------------------------------------------------------------------------- answer type

_INTEGER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+|-?\d+")
_DECIMAL_RE = re.compile(r"-?\d*\.\d+|-?\d{1,3}(?:,\d{3})+\.\d+")
_FRACTION_RE = re.compile(r"-?\\frac\{-?\d+\}\{\d+\}|-?\d+/\d+|-?\\frac\d\d")
_UNIT_TAIL_RE = re.compile(r"\s*(?:\\text\{[^{}]*\}|\\mbox\{[^{}]*\}|\^\{?\\circ\}?|\\%|%|\\!)\s*$")
_TEXT_RE = re.compile(r"\\text(?:bf)?\{[^{}]*\}|[A-Za-z]{3,}(?: [A-Za-z]+)*")


def answer_type(gold: str) -> str:
    """The C6 answer type of a gold answer text, one of ``ANSWER_TYPES``.

    integer ``36``/``1,000``; decimal ``3.54``; fraction ``\\frac{2}{5}``/``2/5``; negative: a
    negative integer, decimal or fraction; radical ``3\\sqrt{5}``/``\\pi``; tuple ``(1, 2)``, a
    pmatrix or a comma list ``-2, 2``; interval ``[0, 1)``/``\\infty``/``\\cup``; text
    ``\\text{Sunday}``; expression: anything else (free symbols). Money signs, ``%``, degree
    signs and a trailing ``\\text{ units}`` are ignored.
    """
    text = normalize_answer(gold).replace("\\$", "").replace("$", "").strip()
    if _TEXT_RE.fullmatch(text) and not re.search(r"\\(?:frac|sqrt|pi)", text):
        return _checked("text")
    previous = None
    while previous != text:
        previous, text = text, _UNIT_TAIL_RE.sub("", text).strip()
    text = text.replace(" ", "")
    for pattern, kind in ((_INTEGER_RE, "integer"), (_DECIMAL_RE, "decimal"), (_FRACTION_RE, "fraction")):
        if pattern.fullmatch(text):
            return _checked("negative" if text.startswith("-") and _nonzero(text) else kind)
    if "\\infty" in text or "\\cup" in text or (
        re.fullmatch(r"[\[(].*,.*[\])]", text) and text[0] + text[-1] in {"[)", "(]", "[]"}
    ):
        return _checked("interval")
    if re.fullmatch(r"\(.*,.*\)", text) or "pmatrix" in text or "," in text:
        return _checked("tuple")
    if "\\sqrt" in text or "\\pi" in text or re.fullmatch(r"-?\d*\\?(?:sqrt|pi).*", text):
        if not re.search(r"(?<![\\a-z])[a-zA-Z](?![a-z])", text.replace("\\sqrt", "").replace("\\pi", "")
                         .replace("\\frac", "")):
            return _checked("radical")
    return _checked("expression")


def _nonzero(text: str) -> bool:
    return bool(re.search(r"[1-9]", text))


def _checked(kind: str) -> str:
    assert kind in ANSWER_TYPES, kind
    return kind
