"""Execution validation, DB shell: build each CoT's program, execute it, store the verdict.

Two kinds of CoT are validated: a problem's reference solution (``Program.source = reference``)
and a teacher trace's CoT (``source = teacher``). Both are idempotent (one program per problem
reference / per trace). When a trace's program reproduces the gold answer, its teacher-derived
labels are trusted: a copy with ``source = execution`` supersedes each current teacher label of
that trace ("if the answer is right, the labels are right").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import Dataset, Label, LabelSource, Problem, Program, ProgramSource, Trace, TraceStatus
from app.execution.validate import ValidationResult, validate_solution


@dataclass(frozen=True)
class StoredVerdict:
    program_id: int | None  # None: already validated before (nothing new written)
    correct: bool | None
    reason: str | None


def _dataset_name(session: Session, problem: Problem) -> str:
    return session.scalar(select(Dataset.name).where(Dataset.id == problem.dataset_id)) or ""


def _insert_program(session: Session, values: dict, conflict_where: str, conflict_column: str) -> int | None:
    statement = (
        insert(Program)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[conflict_column], index_where=text(conflict_where))
        .returning(Program.id)
    )
    return session.scalar(statement)


def _program_values(result: ValidationResult) -> dict:
    return {
        "steps": result.program,
        "answer": result.answer,
        "executes": result.executes,
        "correct": result.correct,
        "error": result.reason,
    }


def validate_reference(session: Session, problem: Problem) -> StoredVerdict:
    """Validate a problem's reference solution; no-op when its reference program exists."""
    if not problem.gold_solution:
        return StoredVerdict(None, None, "no reference solution")
    result = validate_solution(problem.text, problem.gold_solution, problem.gold_answer, _dataset_name(session, problem))
    program_id = _insert_program(
        session,
        {"problem_id": problem.id, "source": ProgramSource.REFERENCE, **_program_values(result)},
        "source = 'reference'",
        "problem_id",
    )
    return StoredVerdict(program_id, result.correct, result.reason)


def validate_trace(session: Session, trace: Trace) -> StoredVerdict:
    """Validate a succeeded trace's CoT; on a correct program, promote its teacher labels."""
    if trace.status != TraceStatus.SUCCEEDED or not trace.cot_text:
        return StoredVerdict(None, None, f"trace {trace.id} has no CoT (status {trace.status})")
    problem = trace.problem
    result = validate_solution(problem.text, trace.cot_text, problem.gold_answer, _dataset_name(session, problem))
    program_id = _insert_program(
        session,
        {"problem_id": problem.id, "trace_id": trace.id, "source": ProgramSource.TEACHER, **_program_values(result)},
        "trace_id IS NOT NULL",
        "trace_id",
    )
    if program_id is not None and result.correct:
        promote_trace_labels(session, trace.id)
    return StoredVerdict(program_id, result.correct, result.reason)


def promote_trace_labels(session: Session, trace_id: int) -> int:
    """Append a ``source=execution`` copy superseding each current teacher label of the trace."""
    superseded = select(Label.supersedes_id).where(Label.supersedes_id.is_not(None))
    current = session.scalars(
        select(Label).where(
            Label.trace_id == trace_id,
            Label.source == LabelSource.TEACHER,
            Label.id.not_in(superseded),
        )
    ).all()
    for label in current:
        session.add(label.copy_with(source=LabelSource.EXECUTION, trace_id=trace_id, supersedes_id=label.id))
    return len(current)
