"""DB shell of error attribution: read labels, predictions, results and traces; write ``attributions``.

``attribute_problems`` is what ``mycelium evaluate`` calls after filling ``inference_results.correct``
/ ``in_beam``, what ``mycelium attribute`` runs inline, and what the ``attribute`` job kind runs per
batch. One attribution per problem × model version × round: re-running updates the row in place
(the unique constraint cannot see a NULL round, so a per-problem advisory lock serialises writers).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from app.attribution.program_view import TASKS, read_program
from app.attribution.rules import Outcome, TeacherTrace, Verdict, attribute
from app.db.models import (
    Attribution,
    AttributionCategory,
    InferenceResult,
    Label,
    Prediction,
    Problem,
    SpecialistModel,
    Trace,
    TraceStatus,
)

_LOCK_NAMESPACE = 0x6174  # "at": attribution rows of one problem
_VERSION_PART_RE = re.compile(r"(C[1-6])(.+)")
_CHUNK = 500


def parse_model_version(model_version: str) -> dict[str, str]:
    """``"C1v1.C2v3.…"`` → ``{"C1": "v1", "C2": "v3", …}``; parts that name no specialist are ignored."""
    parts = (_VERSION_PART_RE.fullmatch(part) for part in model_version.split("."))
    return {m.group(1): m.group(2) for m in parts if m}


@dataclass
class AttributionReport:
    """What one ``attribute_problems`` call did: outcomes counted, problems it could not attribute."""

    model_version: str
    attributed: int = 0
    created: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    not_evaluated: list[int] = field(default_factory=list)  # no inference result, or correct unset

    def as_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "attributed": self.attributed, "created": self.created,
                "outcomes": dict(sorted(self.outcomes.items())), "not_evaluated": len(self.not_evaluated)}


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield list(ids[i:i + _CHUNK])


def current_label_payloads(session: Session, problem_ids: Sequence[int]) -> tuple[dict[int, dict[str, Any]], dict[int, int]]:
    """``{problem_id: {task: payload}}`` of the current labels (newest live row per task), and
    ``{problem_id: trace_id}`` of the trace the labels came from, where one did."""
    superseding = aliased(Label)
    payloads: dict[int, dict[str, Any]] = {}
    traces: dict[int, int] = {}
    for chunk in _chunks(problem_ids):
        rows = session.execute(
            select(Label.problem_id, Label.task, Label.payload, Label.trace_id)
            .where(Label.problem_id.in_(chunk), Label.is_withdrawal.is_(False),
                   ~exists().where(superseding.supersedes_id == Label.id))
            .order_by(Label.id)
        ).all()
        for problem_id, task, payload, trace_id in rows:  # id order: the newest row wins
            payloads.setdefault(problem_id, {})[str(task)] = payload
            if trace_id is not None:
                traces[problem_id] = trace_id
    return payloads, traces


def prediction_payloads(session: Session, model_version: str, problem_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """``{problem_id: {task: payload}}`` of the predictions of the model version's specialists
    (each task read from its own specialist's model row)."""
    versions = parse_model_version(model_version)
    if not versions:
        return {}
    models = session.execute(
        select(SpecialistModel.id, SpecialistModel.specialist, SpecialistModel.version)
    ).all()
    model_task = {mid: str(spec) for mid, spec, version in models if versions.get(str(spec)) == version}
    if not model_task:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(problem_ids):
        rows = session.execute(
            select(Prediction.problem_id, Prediction.model_id, Prediction.task, Prediction.payload)
            .where(Prediction.problem_id.in_(chunk), Prediction.model_id.in_(list(model_task)))
            .order_by(Prediction.id)
        ).all()
        for problem_id, model_id, task, payload in rows:
            if model_task[model_id] == str(task):
                out.setdefault(problem_id, {})[str(task)] = payload
    return out


def teacher_traces(session: Session, problem_ids: Sequence[int], preferred: dict[int, int]) -> dict[int, TeacherTrace]:
    """The succeeded trace of each problem with a CoT: the one its labels came from, else the newest."""
    out: dict[int, TeacherTrace] = {}
    for chunk in _chunks(problem_ids):
        rows = session.execute(
            select(Trace.id, Trace.problem_id, Trace.cot_text, Trace.teacher_answer, Trace.correct)
            .where(Trace.problem_id.in_(chunk), Trace.status == TraceStatus.SUCCEEDED, Trace.cot_text.is_not(None))
            .order_by(Trace.id)
        ).all()
        for trace_id, problem_id, cot, answer, correct in rows:
            if problem_id in out and preferred.get(problem_id) == out[problem_id].trace_id:
                continue
            out[problem_id] = TeacherTrace(cot_text=cot, teacher_answer=answer, correct=correct, trace_id=trace_id)
    return out


def attribute_problems(
    session: Session,
    model_version: str,
    problem_ids: Sequence[int],
    round_id: int | None = None,
) -> AttributionReport:
    """Attribute every evaluated problem of ``problem_ids`` under ``model_version`` (design §6).

    Reads the current C1–C6 labels (reference), the predictions of the version's specialists, the
    ``inference_results`` row (answer, correct, in_beam, candidates) and the teacher trace when
    there is one; writes one ``attributions`` row per problem × model version × round
    (``round_id``, default: the inference result's round), updating an existing row in place.
    Problems without an evaluated inference result (``correct`` unset) are skipped and listed.
    Writes into ``session`` without committing.
    """
    report = AttributionReport(model_version)
    ids = sorted({int(i) for i in problem_ids})
    results: dict[int, InferenceResult] = {}
    for chunk in _chunks(ids):
        for result in session.scalars(select(InferenceResult).where(
                InferenceResult.problem_id.in_(chunk), InferenceResult.model_version == model_version)):
            results[result.problem_id] = result
    report.not_evaluated = [i for i in ids if i not in results or results[i].correct is None]
    evaluated = [i for i in ids if i in results and results[i].correct is not None]
    if not evaluated:
        return report
    gold = dict(session.execute(select(Problem.id, Problem.gold_answer).where(Problem.id.in_(evaluated))).all())
    references, label_traces = current_label_payloads(session, evaluated)
    predictions = prediction_payloads(session, model_version, evaluated)
    traces = teacher_traces(session, evaluated, label_traces)
    for problem_id in evaluated:
        result = results[problem_id]
        verdict = attribute(
            read_program({t: references.get(problem_id, {}).get(t) for t in TASKS}),
            read_program({t: predictions.get(problem_id, {}).get(t) for t in TASKS}),
            Outcome(answer=result.answer, correct=bool(result.correct), in_beam=result.in_beam,
                    candidates=result.candidates or [], no_answer_reason=result.no_answer_reason),
            gold[problem_id],
            traces.get(problem_id),
        )
        created = _upsert(session, problem_id, model_version,
                          round_id if round_id is not None else result.round_id, result.program_id, verdict)
        report.attributed += 1
        report.created += created
        report.outcomes[verdict.outcome] += 1
    session.flush()
    return report


def _upsert(session: Session, problem_id: int, model_version: str, round_id: int | None,
            program_id: int | None, verdict: Verdict) -> bool:
    """Write the attribution row; True when a new row was created."""
    session.execute(select(func.pg_advisory_xact_lock(_LOCK_NAMESPACE, problem_id)))
    row = session.scalar(select(Attribution).where(
        Attribution.problem_id == problem_id, Attribution.model_version == model_version,
        Attribution.round_id.is_not_distinct_from(round_id)))
    category = AttributionCategory(verdict.category) if verdict.category else None
    if row is None:
        session.add(Attribution(problem_id=problem_id, model_version=model_version, round_id=round_id,
                                program_id=program_id, category=category, correct=verdict.outcome == "CORRECT",
                                detail=verdict.detail))
        return True
    row.program_id, row.category, row.correct, row.detail = (
        program_id, category, verdict.outcome == "CORRECT", verdict.detail)
    return False


def evaluated_problem_ids(session: Session, model_version: str, problem_ids: Sequence[int] | None = None) -> list[int]:
    """Problems with an evaluated inference result under ``model_version`` (optionally among ``problem_ids``)."""
    query = select(InferenceResult.problem_id).where(
        InferenceResult.model_version == model_version, InferenceResult.correct.is_not(None)
    ).order_by(InferenceResult.problem_id)
    if problem_ids is not None:
        query = query.where(InferenceResult.problem_id.in_(list(problem_ids)))
    return list(session.scalars(query))


def latest_model_version(session: Session, table: type = InferenceResult) -> str | None:
    """The model version of the newest row of ``table`` (inference results or attributions)."""
    return session.scalar(select(table.model_version).order_by(table.id.desc()).limit(1))


__all__ = ["AttributionReport", "attribute_problems", "parse_model_version", "evaluated_problem_ids",
           "latest_model_version", "current_label_payloads", "prediction_payloads", "teacher_traces"]
