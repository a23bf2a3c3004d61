"""Build a Label Studio review task from plain data — pure (no DB, no I/O).

The task pre-fills what the model (or, before any model exists, the reference solution) says:

* one region per program step, labelled with the step's operation (C2), its score the C2
  probability of that op; ``OPERAND`` regions on the number mentions the step reads (C3), joined
  to the step's region by ``operand`` relations;
* C1's context regions that no step region covers, as untyped ``REGION`` with their scores;
* the program as editable text (:mod:`labeling.program_text`), the answer type pre-selected;
* ``data.review_info``: why the task was selected and per-decision uncertainties (in [0, 1],
  1 = most in need of a human; deliberately not a percentage), the model's answer, and for MATH
  a readable rendering of the LaTeX.

A region's ``score`` is the model's probability of that region's content; the prediction's
``score`` is the task score, the value Label Studio's uncertainty sampling orders by (lowest
first). All offsets are CHAR offsets into the problem text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeling.client import task_key
from labeling.config_xml import (
    ANSWER_TYPE_CONTROL,
    ANSWER_TYPES,
    INFO_NAME,
    OPERAND_LABEL,
    OPERAND_RELATION,
    PROGRAM_CONTROL,
    SPAN_CONTROL,
    SPAN_LABELS,
    TEXT_NAME,
    UNTYPED_LABEL,
)
from labeling.latex_readable import has_latex, readable_latex

DRAFT_SOURCES: tuple[str, ...] = ("model", "reference", "labels", "none")


@dataclass(frozen=True)
class RegionPrediction:
    """A pre-annotated span: char offsets into the problem text, its label and confidence."""

    start: int
    end: int
    score: float | None
    label: str = UNTYPED_LABEL
    source: str | None = None


@dataclass(frozen=True)
class StepDraft:
    """One program step as the screen shows it.

    ``region``: CHAR span the step reads (C2 label/prediction), or None; ``op_p``: C2's
    probability of ``op``; ``top``: C2's best alternatives ``(op, p)``; ``operands``: C3 operands
    in the label shape (``{"kind": "problem", "start", "end", "value"}`` | ``{"kind": "step",
    "ref"}`` | ``{"kind": "constant", "value"}``); ``operand_p``: C3's probability per operand.
    """

    step: int
    op: str
    region: tuple[int, int] | None = None
    op_p: float | None = None
    top: tuple[tuple[str, float], ...] = ()
    operands: tuple[Mapping[str, Any], ...] = ()
    operand_p: tuple[float, ...] = ()


@dataclass(frozen=True)
class ReviewDraft:
    """What the task pre-fills, and where it came from (``source`` in :data:`DRAFT_SOURCES`)."""

    source: str
    program_text: str = ""
    steps: tuple[StepDraft, ...] = ()
    regions: tuple[RegionPrediction, ...] = ()  # C1 / attention context regions
    answer_type: str | None = None
    answer_type_p: float | None = None
    answer: str | None = None  # the model's (or reference's) executed answer
    program_status: str | None = None  # e.g. "executes", "does not execute: …", "no program could be parsed"
    model_version: str | None = None  # the pipeline version the predictions came from
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SelectionInfo:
    """Why the task was selected: priority (1 = most uncertain), components, reasons."""

    priority: float
    reason: str
    components: Mapping[str, float] = field(default_factory=dict)


class TaskPayloadError(ValueError):
    """A region does not fit its problem."""


def _check_span(problem_id: int, text: str, start: int, end: int) -> None:
    if not 0 <= start < end <= len(text):
        raise TaskPayloadError(f"problem {problem_id}: region [{start}, {end}) is outside its text of {len(text)} chars")


def region_result(problem_id: int, text: str, region: RegionPrediction, index: int | str) -> dict[str, Any]:
    """One ``labels`` result item for ``region`` (validated against ``text``)."""
    _check_span(problem_id, text, region.start, region.end)
    label = region.label if region.label in SPAN_LABELS else UNTYPED_LABEL
    item: dict[str, Any] = {
        "id": index if isinstance(index, str) else f"p{problem_id}r{index}",
        "from_name": SPAN_CONTROL,
        "to_name": TEXT_NAME,
        "type": "labels",
        "value": {"start": region.start, "end": region.end, "text": text[region.start : region.end], "labels": [label]},
    }
    if region.score is not None:
        item["score"] = round(float(region.score), 4)
    return item


def answer_type_result(answer_type: str) -> dict[str, Any] | None:
    """A ``choices`` result item pre-selecting ``answer_type`` (None if it is not offered)."""
    if answer_type not in ANSWER_TYPES:
        return None
    return {
        "id": "answer_type",
        "from_name": ANSWER_TYPE_CONTROL,
        "to_name": TEXT_NAME,
        "type": "choices",
        "value": {"choices": [answer_type]},
    }


def program_result(program_text: str) -> dict[str, Any]:
    """The ``program`` textarea pre-filled with the program text (one submission)."""
    return {
        "id": "program",
        "from_name": PROGRAM_CONTROL,
        "to_name": TEXT_NAME,
        "type": "textarea",
        "value": {"text": [program_text]},
    }


def relation_result(from_id: str, to_id: str) -> dict[str, Any]:
    """An ``operand`` relation from a step's region to an operand mention."""
    return {"type": "relation", "from_id": from_id, "to_id": to_id, "direction": "right", "labels": [OPERAND_RELATION]}


def dedupe_regions(regions: Sequence[RegionPrediction]) -> list[RegionPrediction]:
    """One region per (start, end): the typed one if any, then the highest score; sorted by start."""
    best: dict[tuple[int, int], RegionPrediction] = {}
    for region in regions:
        key = (region.start, region.end)
        current = best.get(key)
        rank = (region.label != UNTYPED_LABEL, region.score if region.score is not None else -1.0)
        if current is None or rank > (
            current.label != UNTYPED_LABEL,
            current.score if current.score is not None else -1.0,
        ):
            best[key] = region
    return sorted(best.values(), key=lambda r: (r.start, r.end))


def _fmt(p: float | None) -> str:
    return "?" if p is None else f"{p:.2f}"


def step_summary(step: StepDraft, text: str) -> str:
    """``step 2: ADD  p(op)=0.62 (next SUB 0.30)  reads "…"  operands: 48, step 1``."""
    alternatives = [(op, p) for op, p in step.top if op != step.op][:1]
    parts = [f"step {step.step}: {step.op}", f"p(op)={_fmt(step.op_p)}"]
    if alternatives:
        parts.append(f"(next {alternatives[0][0]} {alternatives[0][1]:.2f})")
    if step.region is not None:
        snippet = text[step.region[0] : step.region[1]]
        parts.append(f'reads "{snippet[:60]}{"…" if len(snippet) > 60 else ""}"')
    operands = []
    for i, operand in enumerate(step.operands):
        kind = operand.get("kind")
        label = f"step {operand.get('ref')}" if kind == "step" else str(operand.get("value"))
        if kind == "constant":
            label += " (constant)"
        if i < len(step.operand_p):
            label += f" p={step.operand_p[i]:.2f}"
        operands.append(label)
    if operands:
        parts.append("operands: " + ", ".join(operands))
    return "  ".join(parts)


_SOURCE_LINES: dict[str, str] = {
    "model": "Pre-filled from the trained specialists' program (model {version}).",
    "reference": "No trained specialists yet: pre-filled from the reference solution's program "
    "(validated by execution), not from a model.",
    "labels": "No trained specialists yet: pre-filled from the current machine labels.",
    "none": "Nothing to pre-fill: no model output, no reference program. Write the program.",
}


def review_info(text: str, draft: ReviewDraft, selection: SelectionInfo, dataset: str | None) -> str:
    """The multi-line text shown above the problem (see the module docstring)."""
    lines = [f"Why this task: {selection.reason or 'selected'}"]
    known = {k: v for k, v in selection.components.items() if v == v}  # drop NaN
    lines.append(
        f"Uncertainty {selection.priority:.2f} (0 = model sure, 1 = needs a human)"
        + (": " + ", ".join(f"{k} {v:.2f}" for k, v in known.items()) if known else "")
    )
    lines.append(_SOURCE_LINES.get(draft.source, "").format(version=draft.model_version or "?"))
    if draft.answer is not None or draft.program_status:
        lines.append(f"Program answer: {draft.answer if draft.answer is not None else '—'}"
                     + (f" ({draft.program_status})" if draft.program_status else ""))
    if draft.answer_type:
        lines.append(f"Answer type: {draft.answer_type} p={_fmt(draft.answer_type_p)}")
    lines.extend(step_summary(step, text) for step in draft.steps)
    lines.extend(draft.notes)
    if dataset == "math" or has_latex(text):
        lines.append("Readable: " + readable_latex(text))
    return "\n".join(line for line in lines if line)


def prediction_result(problem_id: int, text: str, draft: ReviewDraft) -> list[dict[str, Any]]:
    """The prediction's result items: step regions, operand regions, relations, context, program, type."""
    result: list[dict[str, Any]] = []
    step_spans: set[tuple[int, int]] = set()
    operand_ids: dict[tuple[int, int], str] = {}
    relations: list[dict[str, Any]] = []
    for step in draft.steps:
        step_id = f"p{problem_id}s{step.step}"
        if step.region is not None:
            start, end = step.region
            item = region_result(problem_id, text, RegionPrediction(start, end, step.op_p, step.op), step_id)
            item["meta"] = {"text": [step_summary(step, text)]}
            result.append(item)
            step_spans.add((start, end))
        for i, operand in enumerate(step.operands):
            if operand.get("kind") != "problem":
                continue
            span = (int(operand["start"]), int(operand["end"]))
            if span not in operand_ids:
                operand_ids[span] = f"p{problem_id}o{len(operand_ids) + 1}"
                p = step.operand_p[i] if i < len(step.operand_p) else None
                result.append(region_result(problem_id, text, RegionPrediction(*span, p, OPERAND_LABEL), operand_ids[span]))
            if step.region is not None:
                relations.append(relation_result(step_id, operand_ids[span]))
    context = [r for r in dedupe_regions(draft.regions) if (r.start, r.end) not in step_spans]
    result.extend(region_result(problem_id, text, r, i) for i, r in enumerate(context))
    result.extend(relations)
    if draft.program_text:
        result.append(program_result(draft.program_text))
    if draft.answer_type:
        choice = answer_type_result(draft.answer_type)
        if choice is not None:
            result.append(choice)
    return result


def build_task(
    *,
    problem_id: int,
    round_number: int,
    text: str,
    model_version: str,
    task_score: float,
    draft: ReviewDraft | None = None,
    selection: SelectionInfo | None = None,
    dataset: str | None = None,
    regions: Sequence[RegionPrediction] = (),
    answer_type: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The import payload of one review task, with its prediction.

    ``regions``/``answer_type``/``reason`` are the short form for a task without a draft.
    """
    draft = draft or ReviewDraft(source="labels" if regions else "none", regions=tuple(regions), answer_type=answer_type)
    selection = selection or SelectionInfo(priority=1.0 - task_score, reason=reason)
    header = f"Round {round_number} · problem {problem_id}" + (f" ({dataset})" if dataset else "")
    header += f" · model {draft.model_version}" if draft.source == "model" and draft.model_version else " · no model yet"
    return {
        "data": {
            TEXT_NAME: text,
            INFO_NAME: review_info(text, draft, selection, dataset),
            "header": header,
            "problem_id": problem_id,
            "round": round_number,
            "dataset": dataset or "",
            "mycelium_key": task_key(round_number, problem_id),
            "selection_reason": selection.reason,
            "uncertainty": round(float(selection.priority), 4),
            "prefill_source": draft.source,
        },
        "predictions": [
            {"model_version": model_version, "score": float(task_score), "result": prediction_result(problem_id, text, draft)}
        ],
    }
