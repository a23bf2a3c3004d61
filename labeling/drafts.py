"""What a review task pre-fills, read from the database (the shell around ``task_payload``).

Order of preference:

1. **model** — the newest ``inference_results`` row of the problem: its chosen program
   (``programs``, source=model) as text, and the specialists' ``predictions`` rows (C1 regions
   with scores, C2 ops with probabilities and alternatives, C3 operands, C6 answer type);
2. **reference** — no model output yet: the validated reference program (``programs``,
   source=reference, correct) and the live C1/C2/C3/C6 labels derived from it;
3. **labels** — only attention-derived regions and machine labels (the pre-specialist state).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import InferenceResult, LabelTask, Prediction, Problem, Program, ProgramSource
from labeling.label_chain import live_labels
from labeling.program_text import render_program
from labeling.task_payload import RegionPrediction, ReviewDraft, StepDraft

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def sentence_span(text: str, start: int, end: int) -> tuple[int, int]:
    """CHAR span of the sentence of ``text`` containing ``[start, end)`` (a step's fallback region)."""
    left = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() <= start:
            left = match.end()
        elif match.start() >= end:
            return left, match.start()
    return left, len(text)


def _pairs(raw: Any) -> list[tuple[int, int, float | None]]:
    out: list[tuple[int, int, float | None]] = []
    for item in raw or []:
        if isinstance(item, Mapping):
            s, e, p = item.get("start"), item.get("end"), item.get("score")
        elif isinstance(item, (list, tuple)) and len(item) >= 2:
            s, e, p = item[0], item[1], (item[2] if len(item) > 2 else None)
        else:
            continue
        if isinstance(s, int) and isinstance(e, int) and s < e:
            out.append((s, e, None if p is None else float(p)))
    return out


def _region(raw: Any) -> tuple[int, int] | None:
    if isinstance(raw, (list, tuple)) and len(raw) >= 2 and all(isinstance(v, int) for v in raw[:2]) and raw[0] < raw[1]:
        return int(raw[0]), int(raw[1])
    return None


def steps_from_payloads(
    program: Mapping[str, Any] | None, c2: Mapping[str, Any] | None, c3: Mapping[str, Any] | None, text: str
) -> tuple[StepDraft, ...]:
    """Step drafts from C2/C3 payloads (label or prediction shape), else from the program JSON.

    A step without a C2 region reads the sentence of its first problem operand.
    """
    c2_steps = {int(s["step"]): s for s in (c2 or {}).get("steps") or [] if isinstance(s.get("step"), int)}
    c3_steps = {int(s["step"]): s for s in (c3 or {}).get("steps") or [] if isinstance(s.get("step"), int)}
    program_steps = {int(s["id"]): s for s in (program or {}).get("steps") or [] if isinstance(s.get("id"), int)}
    ids = sorted(set(c2_steps) | set(program_steps))
    drafts: list[StepDraft] = []
    for step_id in ids:
        c2_step, c3_step, prog_step = c2_steps.get(step_id, {}), c3_steps.get(step_id, {}), program_steps.get(step_id, {})
        op = str(c2_step.get("op") or prog_step.get("op") or "?")
        operands = tuple(c3_step.get("operands") or prog_step.get("operands") or ())
        region = _region(c2_step.get("region"))
        if region is None:
            first = next((o for o in operands if o.get("kind") == "problem" and isinstance(o.get("start"), int)), None)
            if first is not None and 0 <= first["start"] < first["end"] <= len(text):
                region = sentence_span(text, int(first["start"]), int(first["end"]))
        p = c2_step.get("p")
        top = tuple((str(o), float(q)) for o, q in c2_step.get("top") or [] if isinstance(q, (int, float)))
        operand_p = c3_step.get("p") or []
        drafts.append(
            StepDraft(
                step=step_id,
                op=op,
                region=region,
                op_p=float(p) if isinstance(p, (int, float)) else None,
                top=top,
                operands=operands,
                operand_p=tuple(float(v) for v in operand_p if isinstance(v, (int, float))),
            )
        )
    return tuple(drafts)


def _latest_predictions(session: Session, problem_id: int) -> dict[str, Prediction]:
    rows = session.scalars(select(Prediction).where(Prediction.problem_id == problem_id).order_by(Prediction.id))
    return {str(row.task): row for row in rows}  # newest per task wins


def _live_payload(session: Session, problem_id: int, task: LabelTask) -> dict[str, Any] | None:
    live = live_labels(session, problem_id, task)
    return live[0].payload if live else None


def model_draft(session: Session, problem: Problem) -> ReviewDraft | None:
    """The pre-fill from the specialists' stored outputs, or None when there are none."""
    result = session.scalar(
        select(InferenceResult).where(InferenceResult.problem_id == problem.id).order_by(InferenceResult.id.desc())
    )
    predictions = _latest_predictions(session, problem.id)
    if result is None and not predictions:
        return None
    program = session.get(Program, result.program_id) if result is not None and result.program_id else None
    payload = {task: row.payload for task, row in predictions.items()}
    c6 = payload.get("C6") or {}
    answer_type = c6.get("answer_type") if isinstance(c6.get("answer_type"), str) else None
    type_probs = c6.get("type_probs") or {}
    if program is not None:
        status = "executes" if program.executes else f"does not execute: {program.error or 'error'}"
    elif result is not None:
        status = f"no program could be assembled: {result.no_answer_reason or 'unknown'}"
    else:
        status = None
    notes = ()
    if result is not None and result.disagreement:
        answers = sorted({str(c.get("answer")) for c in result.candidates or [] if isinstance(c, Mapping)})
        notes = (f"Candidate programs disagree: answers {', '.join(answers[:5])}",)
    return ReviewDraft(
        source="model",
        program_text=render_program(program.steps) if program is not None else "",
        steps=steps_from_payloads(program.steps if program else None, payload.get("C2"), payload.get("C3"), problem.text),
        regions=tuple(RegionPrediction(s, e, p, source="C1") for s, e, p in _pairs((payload.get("C1") or {}).get("regions"))),
        answer_type=answer_type,
        answer_type_p=float(type_probs.get(answer_type)) if answer_type in type_probs else None,
        answer=result.answer if result is not None else (program.answer if program else None),
        program_status=status,
        model_version=result.model_version if result is not None else None,
        notes=notes,
    )


def reference_draft(session: Session, problem: Problem) -> ReviewDraft | None:
    """The pre-fill from the validated reference program and its labels, or None."""
    program = session.scalar(
        select(Program)
        .where(Program.problem_id == problem.id, Program.source == ProgramSource.REFERENCE, Program.correct.is_(True))
        .order_by(Program.id.desc())
    )
    if program is None:
        return None
    c1 = _live_payload(session, problem.id, LabelTask.C1) or {}
    c6 = _live_payload(session, problem.id, LabelTask.C6) or {}
    c2 = _live_payload(session, problem.id, LabelTask.C2)
    c3 = _live_payload(session, problem.id, LabelTask.C3)
    return ReviewDraft(
        source="reference",
        program_text=render_program(program.steps),
        steps=steps_from_payloads(program.steps, c2 if c2 and "steps" in c2 else None, c3, problem.text),
        regions=tuple(RegionPrediction(s, e, p, source="label") for s, e, p in _pairs(c1.get("regions"))),
        answer_type=c6.get("answer_type") if isinstance(c6.get("answer_type"), str) else None,
        answer=program.answer,
        program_status="reference solution, reproduces the gold answer",
    )


def review_draft(session: Session, problem: Problem, context: list[RegionPrediction]) -> ReviewDraft:
    """The task's pre-fill (see the module docstring); ``context``: attention regions for step 3."""
    draft = model_draft(session, problem) or reference_draft(session, problem)
    if draft is not None:
        return draft
    c6 = _live_payload(session, problem.id, LabelTask.C6) or {}
    return ReviewDraft(
        source="labels" if context else "none",
        regions=tuple(context),
        answer_type=c6.get("answer_type") if isinstance(c6.get("answer_type"), str) else None,
    )
