"""Error attribution (design §6): the ordered hierarchy of checks; the first that fires wins.

1. ANSWER_NOT_IN_COT — the gold answer appears nowhere in the teacher's CoT.     (teacher-side)
2. TEACHER_ERROR — the teacher's final answer is wrong.                            (teacher-side)
3. SEGMENTATION — C1 regions do not match the reference regions (tolerance: :mod:`.align`),
   or the program has a different number of steps than the reference (C6 fixes the length).
4. CLASSIFICATION — an aligned step's op (C2) differs from the reference op.
5. EXTRACTION — an aligned step reads other numbers than the reference: a problem or constant
   operand differs in value or kind (C3), or a differing constant is one C4 got wrong (C4).
6. DEPENDENCY — the wiring differs: C5's edges, C3's step operands or C6's answer step,
   compared through the alignment.
7. SELECTION — the gold answer was among the executed candidates but not chosen.
8. EXECUTION — anything else (no program executed, or it computed a wrong value).

Teacher-side checks run only with a trace; a correct answer gets no category (``None``); a wrong
answer with no reference labels at all gets ``None`` with outcome ``NO_REFERENCE`` (counted, never
guessed). A check whose payload is missing on either side is skipped and named in ``skipped``.

EXTRACTION compares what each operand *reads* (the value of a problem number under its reading,
a constant's value, or "an earlier step"); which earlier step is DEPENDENCY's business, so one
wrong pointer is counted once.

Pure: ``attribute`` takes the reference and predicted :class:`ProgramView`, the evaluated
:class:`Outcome`, the gold answer and optionally a :class:`TeacherTrace`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from app.attribution.align import Alignment, align_steps, match_regions
from app.attribution.program_view import ProgramView

CATEGORIES: tuple[str, ...] = (
    "ANSWER_NOT_IN_COT", "TEACHER_ERROR", "SEGMENTATION", "CLASSIFICATION",
    "EXTRACTION", "DEPENDENCY", "SELECTION", "EXECUTION",
)
"""Firing order; equals ``app.db.models.AttributionCategory`` (a test checks it)."""
CORRECT = "CORRECT"
NO_REFERENCE = "NO_REFERENCE"

Failure = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """The evaluated pipeline result of one problem (``inference_results``).

    ``candidates`` are the executed candidates ``[{"answer": str, "probability": float}]``;
    ``in_beam`` is the evaluator's verdict (None: decide it here from ``candidates``).
    """

    answer: str | None
    correct: bool
    in_beam: bool | None = None
    candidates: Sequence[Mapping[str, Any]] = ()
    no_answer_reason: str | None = None


@dataclass(frozen=True)
class TeacherTrace:
    """A succeeded teacher trace: the CoT text, its final answer and its verdict (None: unknown)."""

    cot_text: str
    teacher_answer: str | None
    correct: bool | None
    trace_id: int | None = None


@dataclass
class Verdict:
    """``category`` (a :data:`CATEGORIES` value, or None), ``outcome`` (the category, ``CORRECT``
    or ``NO_REFERENCE``) and the JSON ``detail`` stored with the attribution."""

    category: str | None
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def specialist(self) -> str | None:
        return self.detail.get("specialist")


# --------------------------------------------------------------------------- answers


_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def _plain_number(text: str) -> Fraction | None:
    cleaned = text.strip().lstrip("$").rstrip(".")
    return Fraction(cleaned.replace(",", "")) if _NUMBER_RE.fullmatch(cleaned) else None


def _equivalent(answer: str, gold: str) -> bool:
    from app.execution.equivalence import equivalent
    from app.execution.errors import ExecutionError

    try:
        return equivalent(answer, gold)
    except ExecutionError:
        return False


def answer_in_text(gold: str, text: str) -> bool:
    """Whether the gold answer appears in ``text`` (a CoT).

    A plain-number gold is found when any number mention of the text
    (:func:`app.execution.numbers.find_numbers`, so ``1,000`` / ``$18.00`` / words) has its value;
    otherwise when its normalised form occurs in the text with whitespace removed, or a
    ``\\boxed{}`` of the text is equivalent to it.
    """
    from app.execution.answers import find_boxed
    from app.execution.equivalence import normalize_answer
    from app.execution.numbers import find_numbers

    number = _plain_number(gold)
    if number is not None:
        return any(Fraction(int(m.value.p), int(m.value.q)) == number for m in find_numbers(text))
    squeezed = re.sub(r"\s+", "", normalize_answer(gold))
    if squeezed and squeezed in re.sub(r"\s+", "", text):
        return True
    return any(_equivalent(content, gold) for _, _, content in find_boxed(text))


def gold_in_candidates(candidates: Sequence[Mapping[str, Any]], gold: str) -> bool:
    """Whether any executed candidate answer is equivalent to ``gold``."""
    return any(c.get("answer") is not None and _equivalent(str(c["answer"]), gold) for c in candidates)


# --------------------------------------------------------------------------- checks
# Each check returns its failures ([] = passes) or a str naming why it was skipped.


def check_answer_in_cot(trace: TeacherTrace | None, gold: str) -> list[Failure] | str:
    if trace is None:
        return "no teacher trace"
    if answer_in_text(gold, trace.cot_text):
        return []
    return [{"check": "answer_in_cot", "specialist": "teacher", "trace_id": trace.trace_id, "reference": gold}]


def check_teacher_answer(trace: TeacherTrace | None, gold: str) -> list[Failure] | str:
    if trace is None:
        return "no teacher trace"
    correct = trace.correct
    if correct is None:
        correct = trace.teacher_answer is not None and _equivalent(trace.teacher_answer, gold)
    if correct:
        return []
    return [{"check": "teacher_answer", "specialist": "teacher", "trace_id": trace.trace_id,
             "predicted": trace.teacher_answer, "reference": gold}]


def check_segmentation(ref: ProgramView, pred: ProgramView) -> list[Failure] | str:
    failures: list[Failure] = []
    skipped = []
    if ref.regions is not None and pred.regions is not None:
        match = match_regions(pred.regions, ref.regions)
        if not match.matches:
            failures.append({"check": "regions", "specialist": "C1",
                             "missed": [list(r) for r in match.missed], "precision": match.precision,
                             "predicted": [list(r) for r in pred.regions],
                             "reference": [list(r) for r in ref.regions]})
    else:
        skipped.append("regions")
    if ref.n_steps is not None and pred.n_steps is not None:
        if ref.n_steps != pred.n_steps:
            failures.append({"check": "n_steps", "specialist": "C6",
                             "predicted": pred.n_steps, "reference": ref.n_steps})
    else:
        skipped.append("n_steps")
    if len(skipped) == 2:
        return "no C1 regions and no step count on both sides"
    return failures


def check_classification(ref: ProgramView, pred: ProgramView, alignment: Alignment | None) -> list[Failure] | str:
    if alignment is None:
        return "no steps on both sides"
    ref_ops = {s.step: s.op for s in ref.steps or []}
    pred_ops = {s.step: s.op for s in pred.steps or []}
    return [{"check": "op", "specialist": "C2", "step": r, "predicted_step": p,
             "predicted": pred_ops[p], "reference": ref_ops[r]}
            for p, r in alignment.pairs if pred_ops[p] != ref_ops[r]]


def check_extraction(ref: ProgramView, pred: ProgramView, alignment: Alignment | None) -> list[Failure] | str:
    if alignment is None or not (ref.c3_steps and pred.c3_steps):
        return "no C3 operands on both sides"
    ref_steps = {s.step: s for s in ref.steps or []}
    pred_steps = {s.step: s for s in pred.steps or []}
    failures: list[Failure] = []
    constants_involved = False
    for p, r in alignment.pairs:
        ps, rs = pred_steps[p], ref_steps[r]
        if ps.groundings(rs.op) != rs.groundings(rs.op):
            constants_involved |= any(o.kind == "constant" for o in (*ps.operands, *rs.operands))
            failures.append({"check": "operands", "specialist": "C3", "step": r, "predicted_step": p,
                             "predicted": [o.as_json() for o in ps.operands],
                             "reference": [o.as_json() for o in rs.operands]})
    if (failures and constants_involved and ref.constants is not None and pred.constants is not None
            and ref.constants != pred.constants):
        failures.insert(0, {"check": "constants", "specialist": "C4",
                            "predicted": sorted(pred.constants), "reference": sorted(ref.constants)})
    return failures


def check_dependency(ref: ProgramView, pred: ProgramView, alignment: Alignment | None) -> list[Failure] | str:
    if alignment is None:
        return "no steps on both sides"
    to_ref = alignment.to_reference
    failures: list[Failure] = []
    ref_edges, pred_edges = ref.dag_edges(), pred.dag_edges()
    if ref_edges is not None and pred_edges is not None:
        mapped = {(to_ref.get(i), to_ref.get(j)) for i, j in pred_edges}
        if mapped != set(ref_edges):
            failures.append({"check": "edges", "specialist": "C5" if pred.edges is not None else "C3",
                             "missing": sorted([list(e) for e in set(ref_edges) - mapped]),
                             "extra": sorted([list(e) for e in mapped - set(ref_edges)], key=str)})
    if ref.c3_steps and pred.c3_steps:
        ref_steps = {s.step: s for s in ref.steps or []}
        pred_steps = {s.step: s for s in pred.steps or []}
        for p, r in alignment.pairs:
            got = sorted((to_ref.get(o.ref) or 0) for o in pred_steps[p].operands if o.kind == "step")
            want = sorted(o.ref or 0 for o in ref_steps[r].operands if o.kind == "step")
            if got != want:
                failures.append({"check": "step_operands", "specialist": "C3", "step": r,
                                 "predicted_step": p, "predicted": got, "reference": want})
    if ref.answer_step is not None and pred.answer_step is not None:
        if to_ref.get(pred.answer_step) != ref.answer_step:
            failures.append({"check": "answer_step", "specialist": "C6",
                             "predicted": to_ref.get(pred.answer_step), "reference": ref.answer_step})
    if ref_edges is None and not (ref.c3_steps and pred.c3_steps) and ref.answer_step is None:
        return "no edges, step operands or answer step on both sides"
    return failures


def check_selection(outcome: Outcome, gold: str) -> list[Failure]:
    in_beam = outcome.in_beam if outcome.in_beam is not None else gold_in_candidates(outcome.candidates, gold)
    if not in_beam:
        return []
    return [{"check": "selection", "specialist": "search", "predicted": outcome.answer, "reference": gold,
             "candidates": len(outcome.candidates)}]


def check_execution(outcome: Outcome, gold: str) -> list[Failure]:
    return [{"check": "execution", "specialist": "executor", "predicted": outcome.answer, "reference": gold,
             "no_answer_reason": outcome.no_answer_reason}]


# --------------------------------------------------------------------------- the hierarchy


def _alignment(ref: ProgramView, pred: ProgramView) -> Alignment | None:
    """The step alignment, or None when either side has no steps or the counts differ
    (SEGMENTATION has then fired; later step comparisons would compare unlike programs)."""
    if not ref.steps or not pred.steps or len(ref.steps) != len(pred.steps):
        return None
    return align_steps(pred.steps, ref.steps)


def attribute(
    reference: ProgramView,
    predicted: ProgramView,
    outcome: Outcome,
    gold: str,
    trace: TeacherTrace | None = None,
) -> Verdict:
    """Attribute one evaluated problem (design §6). See the module docstring for the order.

    ``detail`` holds ``outcome``, ``specialist`` (who failed first: C1..C6, teacher, search,
    executor), ``failures`` (the firing category's failed checks, predicted vs reference values,
    steps in reference step ids), ``also`` (later categories that would fire too), ``alignment``
    (``[[predicted_step, reference_step], …]``), ``skipped`` (checks without data) and the answers.
    """
    base: dict[str, Any] = {"answer": outcome.answer, "gold": gold}
    if outcome.correct:
        return Verdict(None, CORRECT, {"outcome": CORRECT, **base})
    alignment = _alignment(reference, predicted)
    checks: list[tuple[str, Callable[[], list[Failure] | str]]] = [
        ("ANSWER_NOT_IN_COT", lambda: check_answer_in_cot(trace, gold)),
        ("TEACHER_ERROR", lambda: check_teacher_answer(trace, gold)),
    ]
    if not reference.empty:
        checks += [
            ("SEGMENTATION", lambda: check_segmentation(reference, predicted)),
            ("CLASSIFICATION", lambda: check_classification(reference, predicted, alignment)),
            ("EXTRACTION", lambda: check_extraction(reference, predicted, alignment)),
            ("DEPENDENCY", lambda: check_dependency(reference, predicted, alignment)),
            ("SELECTION", lambda: check_selection(outcome, gold)),
            ("EXECUTION", lambda: check_execution(outcome, gold)),
        ]
    fired: list[tuple[str, list[Failure]]] = []
    skipped: dict[str, str] = {}
    for category, check in checks:
        result = check()
        if isinstance(result, str):
            skipped[category] = result
        elif result:
            fired.append((category, result))
    detail: dict[str, Any] = {**base, "in_beam": outcome.in_beam, "skipped": skipped,
                              "missing_predictions": sorted(reference.tasks - predicted.tasks)}
    if alignment is not None:
        detail["alignment"] = alignment.as_json()
    if reference.answer_type and predicted.answer_type and reference.answer_type != predicted.answer_type:
        detail["answer_type"] = {"specialist": "C6", "predicted": predicted.answer_type,
                                 "reference": reference.answer_type}
    if not fired:  # only possible without reference labels: the teacher-side checks passed
        return Verdict(None, NO_REFERENCE, {"outcome": NO_REFERENCE, "specialist": None, **detail})
    category, failures = fired[0]
    return Verdict(category, category, {
        "outcome": category, "specialist": failures[0]["specialist"], "failures": failures,
        "also": [c for c, _ in fired[1:]], **detail,
    })
